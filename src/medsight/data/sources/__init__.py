"""Dataset sources: folders, manifests, MedMNIST, DICOM directories, CIFAR-10, phantoms."""
