"""tinytrain: on-device int8 training for microcontrollers.

On the host, `import tinytrain` gives the board's API (`Trainer`) over the
same C core the firmware runs, plus the tools that build model files:
`convert` and `plan` (the `tinytrain` command's, same options) return a
`Model` that says its input shape, scale, zero point, layout, layers and
what trains.
"""
from .api import Model, convert, plan
from .cache import epochs
from .inputs import DataWarning
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Trainer", "Model", "convert", "plan", "epochs", "DataWarning"]
