# SPDX-License-Identifier: MIT
# The servers bench/run compares adieu against (issue 5). The raw-epoll ceilings need only
# libc and libcrypto; the libwebsockets peer is built only where libwebsockets-dev is
# installed (`scripts/install-deps bench`), so the default build never needs it. The Python
# and Node peers are scripts in bench/peers/ and are not built.

add_executable(bench-ceiling-ws ceiling_ws.c)
# SHA-1 and base64 for the upgrade answer.
target_link_libraries(bench-ceiling-ws PRIVATE PkgConfig::LIBCRYPTO)
add_executable(bench-ceiling-frame ceiling_frame.c)
set(ADIEU_BENCH_SERVERS bench-ceiling-ws bench-ceiling-frame)

pkg_check_modules(LWS QUIET IMPORTED_TARGET libwebsockets)
if(LWS_FOUND)
  add_executable(bench-lws-echo lws_echo.c)
  target_link_libraries(bench-lws-echo PRIVATE PkgConfig::LWS)
  list(APPEND ADIEU_BENCH_SERVERS bench-lws-echo)
endif()

set_target_properties(${ADIEU_BENCH_SERVERS} PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
