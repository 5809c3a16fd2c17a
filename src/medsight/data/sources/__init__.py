"""Dataset sources: folders, manifests, MedMNIST, DICOM directories, CIFAR-10, phantoms, regions,
and box annotations (Pascal VOC, COCO, box CSV).

Importing this package (which `medsight.data` does) registers the ``npz:``, ``phantom:``,
``cifar:``, ``series:``, ``unreadable:`` and ``region:`` reference schemes.
"""

from medsight.data.sources.box_csv import from_box_csv
from medsight.data.sources.cifar import from_cifar10
from medsight.data.sources.coco import from_coco, to_coco
from medsight.data.sources.dicom_dir import from_dicom_dir
from medsight.data.sources.folder import from_class_folders
from medsight.data.sources.manifest import from_manifest
from medsight.data.sources.medmnist import from_medmnist
from medsight.data.sources.phantom import make_phantoms, phantom_image
from medsight.data.sources.region import crop_region, region_ref
from medsight.data.sources.voc import from_voc

__all__ = [
    "crop_region",
    "from_box_csv",
    "from_cifar10",
    "from_coco",
    "from_class_folders",
    "from_dicom_dir",
    "from_manifest",
    "from_medmnist",
    "from_voc",
    "make_phantoms",
    "phantom_image",
    "region_ref",
    "to_coco",
]
