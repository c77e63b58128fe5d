# embed.cmake — web/ops.html as C: the page's bytes and the Content-Security-Policy
# that admits exactly its one inline <script> and one inline <style> by their
# SHA-256 (core/http/ops_page.h). Run by the build (CMakeLists.txt) whenever the
# page changes; plain CMake, so it needs nothing beyond the build's own tools:
#
#   cmake -DIN=web/ops.html -DOUT=build/generated/ops_page_data.c -P web/embed.cmake
#
# It also refuses a page the policy would break: another <script> or <style>
# element, a script loaded from elsewhere, an inline event handler (onclick=) or
# a style attribute (none of which the hashes admit), so such a mistake fails
# the build instead of a browser.
cmake_minimum_required(VERSION 3.18)
if(NOT IN OR NOT OUT)
  message(FATAL_ERROR "embed.cmake: pass -DIN=page.html -DOUT=file.c")
endif()

file(READ "${IN}" page)
file(READ "${IN}" hex HEX)

# The text between <open> and <close>, which must occur exactly once each.
function(ph_inline_element page open close out rest)
  string(FIND "${page}" "${open}" a)
  string(FIND "${page}" "${open}" a_last REVERSE)
  string(FIND "${page}" "${close}" b)
  string(FIND "${page}" "${close}" b_last REVERSE)
  if(a LESS 0 OR b LESS a OR NOT a EQUAL a_last OR NOT b EQUAL b_last)
    message(FATAL_ERROR "${IN}: expected exactly one ${open}...${close}")
  endif()
  string(LENGTH "${open}" n)
  math(EXPR from "${a} + ${n}")
  math(EXPR len "${b} - ${from}")
  string(SUBSTRING "${page}" ${from} ${len} text)
  string(SUBSTRING "${page}" 0 ${a} before)
  string(LENGTH "${close}" m)
  math(EXPR after "${b} + ${m}")
  string(SUBSTRING "${page}" ${after} -1 tail)
  set(${out} "${text}" PARENT_SCOPE)
  set(${rest} "${before}${tail}" PARENT_SCOPE)
endfunction()

# Lowercase hex digits (an even number of them) as base64.
function(ph_hex_base64 hex out)
  set(abc "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  string(LENGTH "${hex}" n)
  set(res "")
  set(i 0)
  while(i LESS n)
    math(EXPR left "${n} - ${i}")
    set(pad 0)
    if(left GREATER_EQUAL 6)
      string(SUBSTRING "${hex}" ${i} 6 g)
    elseif(left EQUAL 4)
      string(SUBSTRING "${hex}" ${i} 4 g)
      set(g "${g}00")
      set(pad 1)
    else()
      string(SUBSTRING "${hex}" ${i} 2 g)
      set(g "${g}0000")
      set(pad 2)
    endif()
    math(EXPR v "0x${g}")
    set(chars "")
    foreach(shift 18 12 6 0)
      math(EXPR ix "(${v} >> ${shift}) & 63")
      string(SUBSTRING "${abc}" ${ix} 1 c)
      string(APPEND chars "${c}")
    endforeach()
    if(pad EQUAL 1)
      string(SUBSTRING "${chars}" 0 3 chars)
      string(APPEND chars "=")
    elseif(pad EQUAL 2)
      string(SUBSTRING "${chars}" 0 2 chars)
      string(APPEND chars "==")
    endif()
    string(APPEND res "${chars}")
    math(EXPR i "${i} + 6")
  endwhile()
  set(${out} "${res}" PARENT_SCOPE)
endfunction()

ph_inline_element("${page}" "<script>" "</script>" script rest)
ph_inline_element("${rest}" "<style>" "</style>" style rest)
string(TOLOWER "${rest}" lower)
foreach(bad "<script" "<style" " style=" " on[a-z]+=" "javascript:")
  if(lower MATCHES "${bad}")
    message(FATAL_ERROR "${IN}: '${bad}' outside the one <script> and <style>: the page's "
      "Content-Security-Policy would block it (put code in the script, rules in the style)")
  endif()
endforeach()

string(SHA256 script_hex "${script}")
string(SHA256 style_hex "${style}")
ph_hex_base64("${script_hex}" script_b64)
ph_hex_base64("${style_hex}" style_b64)
set(csp "default-src 'none'; script-src 'sha256-${script_b64}'; style-src 'sha256-${style_b64}'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'")

string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
# 16 bytes a line
string(REGEX REPLACE "([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])"
  "\\1\n" lines "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${lines}")

file(WRITE "${OUT}.tmp" "/* Generated from web/ops.html by web/embed.cmake: do not edit. */
#include \"http/ops_page.h\"

const unsigned char ph_ops_page_html[] = {
${bytes}0x00};
const size_t ph_ops_page_len = ${nbytes};
const char ph_ops_page_csp[] =
    \"${csp}\";
")
file(RENAME "${OUT}.tmp" "${OUT}")
