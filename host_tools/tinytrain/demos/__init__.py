"""Demos: `tinytrain demo NAME` runs `tinytrain.demos.NAME.run`.

    personalize   fine-tune an exercise classifier to a new user on the device
"""
DEMOS = ("personalize",)
