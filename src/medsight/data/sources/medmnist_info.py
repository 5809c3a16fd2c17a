"""The MedMNIST v3 catalogue: task, class names, split sizes and official MD5 of every subset.

Copied from ``medmnist/info.py`` of MedMNIST v3.0.2 (github.com/MedMNIST/MedMNIST, commit
3bb56be69bca38e5f105b21e4d6482b91354d3a4), whose files live in Zenodo record 10519652.
The 28-px MD5s of breastmnist, retinamnist and adrenalmnist3d and the 64-px MD5 of
adrenalmnist3d were also checked against real files here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medsight.data.dataset import Task
from medsight.errors import InvalidDataset

ZENODO_RECORD = "10519652"
SIZES_2D = (28, 64, 128, 224)
SIZES_3D = (28, 64)

_ORGAN_2D = [
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
]


# DICOM modality codes (PS3.3 C.7.3.1.1.1) of each subset's source images, so a model trained on
# them records what it expects: US ultrasound, DX radiography, CT, MR, OP ophthalmic photography,
# OPT ophthalmic tomography, XC external-camera photography (dermatoscopy), SM slide microscopy,
# GM general microscopy (blood smears, electron microscopy).
_MODALITY = {
    "pathmnist": "SM", "chestmnist": "DX", "dermamnist": "XC", "octmnist": "OPT",
    "pneumoniamnist": "DX", "retinamnist": "OP", "breastmnist": "US", "bloodmnist": "GM",
    "tissuemnist": "SM", "organamnist": "CT", "organcmnist": "CT", "organsmnist": "CT",
    "organmnist3d": "CT", "nodulemnist3d": "CT", "adrenalmnist3d": "CT", "fracturemnist3d": "CT",
    "vesselmnist3d": "MR", "synapsemnist3d": "GM",
}


@dataclass(frozen=True)
class MedMNISTInfo:
    """One MedMNIST subset as described by the official ``info.py``."""

    flag: str
    task: Task
    labels: tuple[str, ...]
    n_channels: int
    n_samples: dict[str, int]
    md5: dict[int, str] = field(default_factory=dict)
    positive_class: int | None = None
    license: str = "CC BY 4.0"

    @property
    def modality(self) -> str:
        """DICOM modality code of the subset's source images (``US`` for BreastMNIST)."""
        return _MODALITY[self.flag]

    @property
    def is_3d(self) -> bool:
        return self.flag.endswith("3d")

    @property
    def sizes(self) -> tuple[int, ...]:
        return SIZES_3D if self.is_3d else SIZES_2D

    def file_name(self, size: int = 28) -> str:
        """Official file name: ``{flag}.npz`` for 28 px, ``{flag}_{size}.npz`` otherwise."""
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def url(self, size: int = 28) -> str:
        return f"https://zenodo.org/records/{ZENODO_RECORD}/files/{self.file_name(size)}?download=1"


def _info(
    flag: str,
    task: Task,
    labels: list[str],
    channels: int,
    n: tuple[int, int, int],
    md5: dict[int, str],
    positive: int | None = None,
    license: str = "CC BY 4.0",
) -> MedMNISTInfo:
    return MedMNISTInfo(
        flag=flag,
        task=task,
        labels=tuple(labels),
        n_channels=channels,
        n_samples={"train": n[0], "val": n[1], "test": n[2]},
        md5=md5,
        positive_class=positive if positive is not None else (1 if task is Task.BINARY else None),
        license=license,
    )


INFO: dict[str, MedMNISTInfo] = {
    i.flag: i
    for i in [
        _info(
            "pathmnist",
            Task.MULTICLASS,
            [
                "adipose",
                "background",
                "debris",
                "lymphocytes",
                "mucus",
                "smooth muscle",
                "normal colon mucosa",
                "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium",
            ],
            3,
            (89996, 10004, 7180),
            {
                28: "a8b06965200029087d5bd730944a56c1",
                64: "55aa9c1e0525abe5a6b9d8343a507616",
                128: "ac42d08fb904d92c244187169d1fd1d9",
                224: "2c51a510bcdc9cf8ddb2af93af1eadec",
            },
        ),
        _info(
            "chestmnist",
            Task.MULTILABEL,
            [
                "atelectasis",
                "cardiomegaly",
                "effusion",
                "infiltration",
                "mass",
                "nodule",
                "pneumonia",
                "pneumothorax",
                "consolidation",
                "edema",
                "emphysema",
                "fibrosis",
                "pleural",
                "hernia",
            ],
            1,
            (78468, 11219, 22433),
            {
                28: "02c8a6516a18b556561a56cbdd36c4a8",
                64: "9de6cd0b934ebb5b7426cfba5efbae16",
                128: "db107e5590b27930b62dbaf558aebee3",
                224: "45bd33e6f06c3e8cdb481c74a89152aa",
            },
        ),
        _info(
            "dermamnist",
            Task.MULTICLASS,
            [
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ],
            3,
            (7007, 1003, 2005),
            {
                28: "0744692d530f8e62ec473284d019b0c7",
                64: "b70a2f5635c6199aeaa28c31d7202e1f",
                128: "2defd784463fa5243564e855ed717de1",
                224: "8974907d8e169bef5f5b96bc506ae45d",
            },
            license="CC BY-NC 4.0",
        ),
        _info(
            "octmnist",
            Task.MULTICLASS,
            ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
            1,
            (97477, 10832, 1000),
            {
                28: "c68d92d5b585d8d81f7112f81e2d0842",
                64: "e229e9440236b774d9f0dfef9d07bdaf",
                128: "0a97e76651ace45c5d943ee3f65b63ae",
                224: "abc493b6d529d5de7569faaef2773ba3",
            },
        ),
        _info(
            "pneumoniamnist",
            Task.BINARY,
            ["normal", "pneumonia"],
            1,
            (4708, 524, 624),
            {
                28: "28209eda62fecd6e6a2d98b1501bb15f",
                64: "8f4eceb4ccffa70c672198ea285246c6",
                128: "05b46931834c231683c68f40c47b2971",
                224: "d6a3c71de1b945ea11211b03746c1fe1",
            },
        ),
        _info(
            "retinamnist",
            Task.ORDINAL,
            ["0", "1", "2", "3", "4"],
            3,
            (1080, 120, 400),
            {
                28: "bd4c0672f1bba3e3a89f0e4e876791e4",
                64: "afda852cc34dcda56f86ad2b2457dbcc",
                128: "e48e916a24454daf90583d4e6efb1a18",
                224: "eae7e3b6f3fcbda4ae613ebdcbe35348",
            },
        ),
        _info(
            "breastmnist",
            Task.BINARY,
            ["malignant", "normal, benign"],
            1,
            (546, 78, 156),
            {
                28: "750601b1f35ba3300ea97c75c52ff8f6",
                64: "742edef2a1fd1524b2efff4bd7ba9364",
                128: "363e4b3f8d712e9b5de15470a2aaadf1",
                224: "b56378a6eefa9fed602bb16d192d4c8b",
            },
            positive=0,
        ),
        _info(
            "bloodmnist",
            Task.MULTICLASS,
            [
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ],
            3,
            (11959, 1712, 3421),
            {
                28: "7053d0359d879ad8a5505303e11de1dc",
                64: "2b94928a2ae4916078ca51e05b6b800b",
                128: "adace1e0ed228fccda1f39692059dd4c",
                224: "b718ff6835fcbdb22ba9eacccd7b2601",
            },
        ),
        _info(
            "tissuemnist",
            Task.MULTICLASS,
            [
                "Collecting Duct, Connecting Tubule",
                "Distal Convoluted Tubule",
                "Glomerular endothelial cells",
                "Interstitial endothelial cells",
                "Leukocytes",
                "Podocytes",
                "Proximal Tubule Segments",
                "Thick Ascending Limb",
            ],
            1,
            (165466, 23640, 47280),
            {
                28: "ebe78ee8b05294063de985d821c1c34b",
                64: "123ece2eba09d0aa5d698fda57103344",
                128: "61b955355d7425a89687b06cca3ce0c2",
                224: "b077128c4a949f0a4eb01517f9037b9c",
            },
        ),
        _info(
            "organamnist",
            Task.MULTICLASS,
            _ORGAN_2D,
            1,
            (34561, 6491, 17778),
            {
                28: "68e3f8846a6bd62f0c9bf841c0d9eacc",
                64: "2dcccc29b88e6da5a01161ef20cda288",
                128: "eeae80d0a227a8d099027e1b3cfd3b60",
                224: "50747347e05c87dd3aaf92c49f9f3170",
            },
        ),
        _info(
            "organcmnist",
            Task.MULTICLASS,
            _ORGAN_2D,
            1,
            (12975, 2392, 8216),
            {
                28: "b9ceb9546e10131b32923c5bbeaea2b1",
                64: "3ce34a8724ea6f548e6db4744d03b6a9",
                128: "773c1f009daa3fe5d9a2a201b2a7ed94",
                224: "050f5e875dc056f6768abf94ec9995d1",
            },
        ),
        _info(
            "organsmnist",
            Task.MULTICLASS,
            _ORGAN_2D,
            1,
            (13932, 2452, 8827),
            {
                28: "9ab87b696fb54e2a387ebe992d6ed5f1",
                64: "53a6d115339d874c25e309a994ff46d3",
                128: "ded0c5fa01a95dc4978b956f613e9b8e",
                224: "b354719e553fbbb2513d5533f52a4cb1",
            },
        ),
        _info(
            "organmnist3d",
            Task.MULTICLASS,
            [
                "liver",
                "kidney-right",
                "kidney-left",
                "femur-right",
                "femur-left",
                "bladder",
                "heart",
                "lung-right",
                "lung-left",
                "spleen",
                "pancreas",
            ],
            1,
            (971, 161, 610),
            {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"},
        ),
        _info(
            "nodulemnist3d",
            Task.BINARY,
            ["benign", "malignant"],
            1,
            (1158, 165, 310),
            {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"},
        ),
        _info(
            "adrenalmnist3d",
            Task.BINARY,
            ["normal", "hyperplasia"],
            1,
            (1188, 98, 298),
            {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"},
        ),
        _info(
            "fracturemnist3d",
            Task.MULTICLASS,
            ["buckle rib fracture", "nondisplaced rib fracture", "displaced rib fracture"],
            1,
            (1027, 103, 240),
            {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"},
        ),
        _info(
            "vesselmnist3d",
            Task.BINARY,
            ["vessel", "aneurysm"],
            1,
            (1335, 191, 382),
            {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"},
        ),
        _info(
            "synapsemnist3d",
            Task.BINARY,
            ["inhibitory synapse", "excitatory synapse"],
            1,
            (1230, 177, 352),
            {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"},
        ),
    ]
}


def lookup(flag: str) -> MedMNISTInfo:
    """The catalogue entry for a flag such as ``breastmnist``; accepts ``breast``/``adrenal3d``."""
    key = flag.strip().lower()
    if key in INFO:
        return INFO[key]
    for candidate in (f"{key}mnist", key.replace("3d", "mnist3d")):
        if candidate in INFO:
            return INFO[candidate]
    raise InvalidDataset(f"unknown MedMNIST subset {flag!r}; known: {', '.join(INFO)}")
