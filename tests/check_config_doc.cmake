# check_config_doc.cmake - docs/CONFIG.md must embed exactly what the
# configuration table generates (ctest docs_config_in_sync).
#
#   cmake -DGEN=<path to fleetmq-config-doc> -DDOC=<path to CONFIG.md> -P check_config_doc.cmake
#
# Runs GEN and compares its standard output byte for byte with the text of
# DOC between the line "<!-- BEGIN GENERATED: build/tools/fleetmq-config-doc -->"
# and the line "<!-- END GENERATED -->" (the marker lines themselves and the
# newline ending the BEGIN line excluded). Fails on any difference, on a
# missing or repeated marker, and when GEN fails.

set(begin_marker "<!-- BEGIN GENERATED: build/tools/fleetmq-config-doc -->\n")
set(end_marker "<!-- END GENERATED -->")

if(NOT DEFINED GEN OR NOT DEFINED DOC)
  message(FATAL_ERROR "usage: cmake -DGEN=<fleetmq-config-doc> -DDOC=<CONFIG.md> -P check_config_doc.cmake")
endif()
if(NOT EXISTS "${DOC}")
  message(FATAL_ERROR "${DOC} does not exist")
endif()

execute_process(COMMAND "${GEN}"
  RESULT_VARIABLE gen_rc
  OUTPUT_VARIABLE generated
  ERROR_VARIABLE gen_err)
if(NOT gen_rc EQUAL 0)
  message(FATAL_ERROR "${GEN} failed (${gen_rc}): ${gen_err}")
endif()

file(READ "${DOC}" doc)

string(FIND "${doc}" "${begin_marker}" begin_at)
string(FIND "${doc}" "${begin_marker}" begin_last REVERSE)
if(begin_at EQUAL -1)
  message(FATAL_ERROR "${DOC}: no line '<!-- BEGIN GENERATED: build/tools/fleetmq-config-doc -->'")
endif()
if(NOT begin_at EQUAL begin_last)
  message(FATAL_ERROR "${DOC}: the BEGIN GENERATED marker appears more than once")
endif()
string(LENGTH "${begin_marker}" begin_len)
math(EXPR body_at "${begin_at} + ${begin_len}")
string(SUBSTRING "${doc}" ${body_at} -1 rest)

string(FIND "${rest}" "${end_marker}" end_at)
if(end_at EQUAL -1)
  message(FATAL_ERROR "${DOC}: no '${end_marker}' after the BEGIN GENERATED marker")
endif()
string(SUBSTRING "${rest}" 0 ${end_at} embedded)

if(NOT embedded STREQUAL generated)
  set(fresh "${CMAKE_CURRENT_BINARY_DIR}/CONFIG.generated.md")
  file(WRITE "${fresh}" "${generated}")
  message(FATAL_ERROR
    "${DOC} is out of date: the table between the GENERATED markers differs from "
    "the output of ${GEN}.\n"
    "The current output was written to ${fresh}; paste it between the markers "
    "(or run: ${GEN} > table.md) and commit the result.")
endif()
message(STATUS "${DOC}: generated table is in sync")
