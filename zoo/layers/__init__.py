"""Dynamic-width layers: they compute only the channels a compute ratio keeps."""

from zoo.layers.block_gate import BlockGate
from zoo.layers.budget_batch_normalization import BudgetBatchNormalization
from zoo.layers.dynamic_batch_normalization import DynamicBatchNormalization
from zoo.layers.dynamic_conv1d import DynamicConv1D
from zoo.layers.dynamic_conv2d import DynamicConv2D
from zoo.layers.dynamic_dense import DynamicDense
from zoo.layers.dynamic_depthwise_conv2d import DynamicDepthwiseConv2D
from zoo.layers.dynamic_layer import DynamicLayer
from zoo.layers.dynamic_layer_normalization import DynamicLayerNormalization
from zoo.layers.profile_branches import ProfileBranches
from zoo.layers.zero_pad_shortcut import ZeroPadShortcut

__all__ = [
    "BlockGate",
    "BudgetBatchNormalization",
    "DynamicBatchNormalization",
    "DynamicConv1D",
    "DynamicConv2D",
    "DynamicDense",
    "DynamicDepthwiseConv2D",
    "DynamicLayer",
    "DynamicLayerNormalization",
    "ProfileBranches",
    "ZeroPadShortcut",
]
