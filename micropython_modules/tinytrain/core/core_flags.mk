# The C core's compiler flags: the one list every build of the core reads
# (setup.py and the ASan/UBSan runner through host_tools/tinytrain/core_flags.py,
# firmware/baremetal/Makefile (every target), micropython.mk, micropython.cmake, natmod/Makefile).
# C99; every warning an error, with the float-to-double and float-conversion
# warnings of the Cortex-M builds; host and device bit-identical: no fused
# multiply-add contraction, single-precision literals, no fast-math.
# Optimisation, debug info and sanitizers are each build's own choice.
# Keep it one assignment of plain flags (the Python and CMake readers parse it).
TT_CORE_CFLAGS := -std=c99 -Wall -Wextra -Werror -Wdouble-promotion -Wfloat-conversion \
                  -ffp-contract=off -fsingle-precision-constant -fno-fast-math
