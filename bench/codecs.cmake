# SPDX-License-Identifier: MIT
# bench_<codec>: the throughput of each sans-I/O codec (STYLE 2.7, picohttpparser's bench.c),
# linked with adieu_proto alone and written to build/bench/. `make bench-count` runs them
# under callgrind (bench/count-instructions) for instruction counts that repeat.
set(ADIEU_BENCH_CODECS frame ws_frame utf8 http json ws_conn)
foreach(codec ${ADIEU_BENCH_CODECS})
  add_executable(bench_${codec} ${CMAKE_CURRENT_SOURCE_DIR}/bench_${codec}.c
    ${CMAKE_CURRENT_SOURCE_DIR}/harness.c)
  target_link_libraries(bench_${codec} PRIVATE adieu_proto)
  set_target_properties(bench_${codec} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
endforeach()
