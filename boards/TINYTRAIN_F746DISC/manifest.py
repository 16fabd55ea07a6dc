# The stm32 port's usual frozen modules (asyncio, dht, onewire); no networking.
include("$(PORT_DIR)/boards/manifest.py")
