# The stm32 port's usual frozen modules (asyncio, dht, onewire); no networking.
include("$(PORT_DIR)/boards/manifest.py")
# The device side of `tinytrain stream` (docs/streaming.md); paths are relative
# to this file.
module("tinytrain_stream.py", base_path="../../micropython_modules/tinytrain/python")
