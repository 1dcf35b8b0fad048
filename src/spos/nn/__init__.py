"""The networks: choice blocks, the stateless supernet, exact BN recalibration, BN folding and
ONNX export of a module as it is."""

from .blocks import ChoiceBlock
from .bn import recalibrate_bn
from .supernet import SubNet, SuperNet

__all__ = ["ChoiceBlock", "SubNet", "SuperNet", "recalibrate_bn"]
