# Builds remotefn and installs it under a prefix, in one command:
#   cmake -DPREFIX=/usr/local -P cmake/install.cmake
# Installs include/remotefn.h and remotefn.hpp, lib/libremotefn.so.<ABI> (and its libremotefn.so
# link), lib/libremotefn.a, lib/pkgconfig/remotefn.pc and remotefn-static.pc, and
# lib/cmake/remotefn (for find_package). Optional: -DPROFILE=dev (faster to build, slower to
# run), -DBUILD_DIR=DIR (default target/cmake), -DCARGO_TARGET_DIR=DIR; DESTDIR in the
# environment stages the install (packaging).
cmake_minimum_required(VERSION 3.19)

if(NOT DEFINED PREFIX)
  message(FATAL_ERROR "say where to install: cmake -DPREFIX=/usr/local -P cmake/install.cmake")
endif()
get_filename_component(remotefn_source "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
get_filename_component(PREFIX "${PREFIX}" ABSOLUTE)
if(NOT DEFINED BUILD_DIR)
  set(BUILD_DIR "${remotefn_source}/target/cmake")
endif()
set(remotefn_options "-DCMAKE_INSTALL_PREFIX=${PREFIX}")
if(DEFINED PROFILE)
  list(APPEND remotefn_options "-DREMOTEFN_CARGO_PROFILE=${PROFILE}")
endif()
if(DEFINED CARGO_TARGET_DIR)
  list(APPEND remotefn_options "-DREMOTEFN_CARGO_TARGET_DIR=${CARGO_TARGET_DIR}")
endif()

execute_process(COMMAND "${CMAKE_COMMAND}" -S "${remotefn_source}" -B "${BUILD_DIR}" ${remotefn_options}
  COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
  COMMAND_ERROR_IS_FATAL ANY)
if(DEFINED ENV{DESTDIR})
  message(STATUS "remotefn staged under $ENV{DESTDIR}${PREFIX} (for ${PREFIX})")
else()
  message(STATUS "remotefn installed under ${PREFIX}")
endif()
