/* The instruction counter lives in m7_runtime.h; this name is kept for includes. */
#include "m7_runtime.h"
