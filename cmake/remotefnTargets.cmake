# The imported targets of remotefn, shared by the source build (CMakeLists.txt at the top of the
# repository) and the installed package (remotefnConfig.cmake):
#   remotefn::shared    libremotefn.so (SONAME libremotefn.so.<ABI version>)
#   remotefn::static    libremotefn.a, with the system libraries it needs
#   remotefn::remotefn  one of the two: static if REMOTEFN_USE_STATIC_LIBS is ON, else shared
# Each carries the include directory of remotefn.h and remotefn.hpp.

# remotefn_define_targets(<lib dir> <include dir> <ABI version> <system libs> [GLOBAL])
function(remotefn_define_targets lib_dir include_dir abi system_libs)
  set(scope)
  if(ARGN STREQUAL "GLOBAL")
    set(scope GLOBAL)
  endif()
  if(APPLE)
    set(shared_file "libremotefn.${abi}.dylib")
  else()
    set(shared_file "libremotefn.so.${abi}")
  endif()

  add_library(remotefn::shared SHARED IMPORTED ${scope})
  set_target_properties(remotefn::shared PROPERTIES
    IMPORTED_LOCATION "${lib_dir}/${shared_file}"
    IMPORTED_SONAME "${shared_file}"
    INTERFACE_INCLUDE_DIRECTORIES "${include_dir}")

  add_library(remotefn::static STATIC IMPORTED ${scope})
  set_target_properties(remotefn::static PROPERTIES
    IMPORTED_LOCATION "${lib_dir}/libremotefn.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "${include_dir}"
    INTERFACE_LINK_LIBRARIES "${system_libs}")

  add_library(remotefn::remotefn INTERFACE IMPORTED ${scope})
  if(REMOTEFN_USE_STATIC_LIBS)
    set_target_properties(remotefn::remotefn PROPERTIES INTERFACE_LINK_LIBRARIES remotefn::static)
  else()
    set_target_properties(remotefn::remotefn PROPERTIES INTERFACE_LINK_LIBRARIES remotefn::shared)
  endif()
endfunction()
