"""medsight: medical image classification and detection."""
__version__ = "0.1.0"
