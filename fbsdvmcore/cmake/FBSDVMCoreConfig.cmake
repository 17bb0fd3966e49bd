# CMake package of the libfbsdvmcore drop-in (fbsdvmcore/ in libkvm-rs),
# found as libfbsdvmcore's own is: lldb's LLDBConfig.cmake runs
# find_package(FBSDVMCore) and links the imported target `fbsdvmcore`.
# Installed by cargo cinstall as PREFIX/share/cmake/FBSDVMCore/.

get_filename_component(_fbsdvmcore_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
find_library(FBSDVMCORE_LIBRARY NAMES fbsdvmcore
  HINTS "${_fbsdvmcore_prefix}/lib" "${_fbsdvmcore_prefix}/lib64"
  PATH_SUFFIXES "${CMAKE_LIBRARY_ARCHITECTURE}" NO_DEFAULT_PATH)
find_path(FBSDVMCORE_INCLUDE_DIR fvc.h
  HINTS "${_fbsdvmcore_prefix}/include" NO_DEFAULT_PATH)
if(FBSDVMCORE_LIBRARY AND FBSDVMCORE_INCLUDE_DIR)
  if(NOT TARGET fbsdvmcore)
    add_library(fbsdvmcore UNKNOWN IMPORTED)
    set_target_properties(fbsdvmcore PROPERTIES
      IMPORTED_LOCATION "${FBSDVMCORE_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${FBSDVMCORE_INCLUDE_DIR}")
  endif()
  set(FBSDVMCore_FOUND TRUE)
else()
  set(FBSDVMCore_FOUND FALSE)
  set(FBSDVMCore_NOT_FOUND_MESSAGE
    "libfbsdvmcore or fvc.h not found under ${_fbsdvmcore_prefix}")
endif()
unset(_fbsdvmcore_prefix)
