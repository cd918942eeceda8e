"""DyVEDeep's effort knobs: a trained model does less work per input, no retraining.

```python
fast = zoo.effort.tune(model, (x_val, y_val), max_accuracy_drop=0.005)
fast.predict(x)
zoo.effort.report(fast, (x_test, y_test))
```

Three knobs (Ganapathy et al., DyVEDeep), each per input and each with its
own thresholds: SPET stops ReLU neurons whose partial sums predict
saturation, SDSS fills feature-map positions from computed neighbours, and
SFMA merges alike input maps of a convolution. See `EffortConv2D`.
"""

from zoo.effort.effort_conv2d import EffortConv2D
from zoo.effort.effort_dense import EffortDense
from zoo.effort.folded import Folded
from zoo.effort.preparation import effort_layers, prepare
from zoo.effort.reporting import operations, report, without_knobs
from zoo.effort.tuning import CANDIDATES, calibrate, settings, tune

__all__ = [
    "CANDIDATES",
    "EffortConv2D",
    "EffortDense",
    "Folded",
    "calibrate",
    "effort_layers",
    "operations",
    "prepare",
    "report",
    "settings",
    "tune",
    "without_knobs",
]
