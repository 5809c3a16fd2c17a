"""The neural network registry: `create_network(name, ...)`, `list_networks()`, `embed(...)`.

Importing this package registers every network; a new network is one module here with one
`@register_network` factory, plus its import below.
"""

from medsight.models.networks import (  # noqa: F401  (imported to register their networks)
    acs,
    alexnet,
    detection,
    detection_torchvision,
    resnet3d,
    resnet_small,
    small3d,
    torchvision_nets,
)
from medsight.models.networks.acs import ACSConv, convert_2d_to_3d
from medsight.models.networks.base import Network, embed, global_average
from medsight.models.networks.registry import (
    NetworkInfo,
    create_network,
    list_networks,
    network_info,
    register_network,
)
from medsight.models.networks.weights import adapt_input_channels, load_weights

__all__ = [
    "ACSConv",
    "Network",
    "NetworkInfo",
    "adapt_input_channels",
    "convert_2d_to_3d",
    "create_network",
    "embed",
    "global_average",
    "list_networks",
    "load_weights",
    "network_info",
    "register_network",
]
