"""SRLane network, losses and decoding."""
from srlane.models.detector import SRLane, build_net, load_state_dict_compat

__all__ = ["SRLane", "build_net", "load_state_dict_compat"]
