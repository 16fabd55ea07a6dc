"""Demos: `tinytrain demo NAME` runs `tinytrain.demos.NAME.run`.

    personalize   fine-tune an exercise classifier to a new user on the device
    vision        transfer learning on images: MCUNet-5fps (or a small CNN) learns
                  digits or faces on the device with a sparse update
"""
DEMOS = ("personalize", "vision")
