"""PACS integration: DICOMweb and DIMSE clients, pulling studies into local datasets, the watcher that
runs models on new series, and the DICOM results (SR, secondary capture) written back (highdicom).

Uses `deploy` (one `Predictor` for every path) and below; never `serve`, `train` or `cli`.
"""

from medsight.pacs.client import Pacs, open_pacs
from medsight.pacs.config import PacsConfig

__all__ = ["Pacs", "PacsConfig", "open_pacs"]
