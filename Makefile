# tinytrain: the documented entry points.
#
#   make setup        install everything a fresh machine needs
#   make test         the whole test suite (what CI runs)
#   make demo         the main job: personalise an IMU model on the simulator
#   make bench        the paper's models on the Cortex-M7 (step SRAM, instructions; BENCH_ARGS=--quick), then RV32
#   make bench-rv32   instructions on the emulated RV32 core beside the Cortex-M7
#   make bench-sparse sparse update vs last layer / bias-only under budgets (MCUNet, ~20 min)
#   make m7-selftest  the bare-metal Cortex-M7 harness under qemu
#   make fuzz SECONDS=N  libFuzzer on model files (clang), N seconds (default 60), JOBS workers (default: all cores)
#   make rv32-selftest the bare-metal RV32 (ESP32-C3/C6 class) harness under qemu
#   make soak         100,000 simulator and 10,000 qemu device steps: nothing drifts or leaks (SOAK_ARGS=...)

PYTHON ?= python3
# gcc/libc6-dev: the host core, the unix port and the x64 .mpy; arm-none-eabi + newlib:
# the Cortex-M7 harness, the qemu and F746 firmware and the armv7emsp .mpy.
# clang: the libFuzzer harness (make fuzz and its smoke test).
# riscv64-unknown-elf + picolibc, qemu-system-misc: the core on RV32 under qemu.
# gcc-multilib (x86-64 machines): the x86 .mpy and the 32-bit unix port it is tested on.
HOST_X86_64 := $(filter x86_64,$(shell uname -m))
APT_PACKAGES := gcc libc6-dev make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang \
                gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc \
                $(if $(HOST_X86_64),gcc-multilib)
NEEDED_TOOLS := gcc make arm-none-eabi-gcc arm-none-eabi-nm arm-none-eabi-size qemu-system-arm clang \
                riscv64-unknown-elf-gcc qemu-system-riscv32
# Python extras: test (the suite) and device (pyelftools and ar: the .mpy build).
PIP_EXTRAS := test,device

.PHONY: setup test demo bench bench-rv32 bench-sparse m7-selftest rv32-selftest fuzz soak clean

# MicroPython firmware, the qemu device, the unix port and the .mpy module
include firmware/firmware.mk

setup:
	@missing=""; for t in $(NEEDED_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	command -v arm-none-eabi-gcc >/dev/null && [ "$$(arm-none-eabi-gcc -print-file-name=libc.a)" = libc.a ] \
	  && missing="$$missing newlib"; \
	[ -z "$(HOST_X86_64)" ] || gcc -m32 -print-file-name=crtbegin.o 2>/dev/null | grep -q /32/ \
	  || missing="$$missing gcc-multilib"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  if ! command -v apt-get >/dev/null; then \
	    echo "no apt-get: install $(APT_PACKAGES) with your package manager" >&2; exit 1; fi; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	$(PYTHON) -m pip install -q -e ".[$(PIP_EXTRAS)]"

# With a MicroPython tree (MICROPY_DIR, else ../shared/micropython) this includes
# tests/device (unix port, qemu, .mpy, the F746 firmware build) and the stream
# tests on MicroPython; the ports are built once into build/ and reused.
test:
	MICROPY_DIR=$(MICROPY_DIR) $(PYTHON) -m pytest -q -ra tests

demo:
	tinytrain demo personalize

BENCH_ARGS ?=
bench:
	$(PYTHON) benchmarks/bench_m7.py $(BENCH_ARGS)
	$(PYTHON) benchmarks/bench_rv32.py

bench-rv32:
	$(PYTHON) benchmarks/bench_rv32.py

bench-sparse:
	$(PYTHON) benchmarks/bench_sparse_update.py

# the device part streams to the qemu firmware: build it first
soak: qemu
	$(PYTHON) benchmarks/soak.py $(SOAK_ARGS)

m7-selftest:
	$(MAKE) -C firmware/baremetal TARGET=m7 run

fuzz:
	$(PYTHON) fuzz/run_fuzz.py --seconds $(or $(SECONDS),60) $(if $(JOBS),--jobs $(JOBS))

rv32-selftest:
	@mkdir -p firmware/baremetal/build/rv32
	@head -c 4096 /dev/urandom > firmware/baremetal/build/rv32/selftest_in.bin
	$(MAKE) -C firmware/baremetal TARGET=rv32 run

clean:
	rm -rf build firmware/baremetal/build host_tools/tinytrain/_core*.so host_tools/*.egg-info
