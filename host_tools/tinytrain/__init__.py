"""tinytrain: on-device int8 training for microcontrollers.

On the host, `import tinytrain` gives the board's API (`Trainer`) over the
same C core the firmware runs, plus the tools that build model files.
"""
from .cache import epochs
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Trainer", "epochs"]
