"""Converters from other model formats into a QGraph.

`tinytrain.convert(...)` is also the Python API's convert (tinytrain/api.py):
importing a converter (`tinytrain.convert.onnx`) makes this package the
attribute `tinytrain.convert`, so the package calls that function.
"""
import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, source, **options):
        from ..api import convert
        return convert(source, **options)


sys.modules[__name__].__class__ = _CallablePackage
