# tinytrain as a MicroPython user C module (CMake-based ports: rp2, esp32).
#   make USER_C_MODULES=<project>/micropython_modules/tinytrain/micropython.cmake
#        [MICROPY_TINYTRAIN_ARENA_SIZE=...]   (or include() this file from a
#        micropython.cmake that lists several modules)
# Not built in this project's CI (no rp2/esp32 toolchain there).
add_library(usermod_tinytrain INTERFACE)

file(GLOB TINYTRAIN_CORE_C ${CMAKE_CURRENT_LIST_DIR}/core/*.c ${CMAKE_CURRENT_LIST_DIR}/core/kernels/*.c)

set(MICROPY_TINYTRAIN_ARENA_SIZE 163840 CACHE STRING "tinytrain static arena in bytes")

target_sources(usermod_tinytrain INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/modtinytrain.c
    ${TINYTRAIN_CORE_C}
)

target_include_directories(usermod_tinytrain INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/core
)

target_compile_definitions(usermod_tinytrain INTERFACE
    MICROPY_TINYTRAIN_ARENA_SIZE=${MICROPY_TINYTRAIN_ARENA_SIZE}
)

# The core's own flags (one list for every build, core/core_flags.mk: C99,
# warnings, and bit-exact with the host simulator), on the core only.
file(READ ${CMAKE_CURRENT_LIST_DIR}/core/core_flags.mk TINYTRAIN_FLAGS_MK)
string(REGEX REPLACE "#[^\n]*" "" TINYTRAIN_FLAGS_MK "${TINYTRAIN_FLAGS_MK}")
string(REGEX REPLACE "\\\\\n" " " TINYTRAIN_FLAGS_MK "${TINYTRAIN_FLAGS_MK}")
string(REGEX MATCH "TT_CORE_CFLAGS[ \t]*:=([^\n]*)" TINYTRAIN_FLAGS_LINE "${TINYTRAIN_FLAGS_MK}")
separate_arguments(TINYTRAIN_CORE_CFLAGS UNIX_COMMAND "${CMAKE_MATCH_1}")
set_source_files_properties(${TINYTRAIN_CORE_C} PROPERTIES
    COMPILE_OPTIONS "${TINYTRAIN_CORE_CFLAGS}"
)

target_link_libraries(usermod INTERFACE usermod_tinytrain)
