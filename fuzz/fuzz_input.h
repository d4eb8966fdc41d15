// Shared by the fuzz targets: the parsers under test read files, so each input is written to
// a per-process file in /dev/shm first. Only lowbit::Error may escape a parser; anything else
// (another exception type, a crash, a sanitizer report) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lowbit/engine/error.h"

namespace lowbit::fuzz {

inline const std::string& input_path(const char* ext) {
  static const std::string path = "/dev/shm/lowbit_fuzz_" + std::to_string(::getpid()) + ext;
  return path;
}

inline const std::string& write_input(const uint8_t* data, size_t size, const char* ext) {
  const std::string& p = input_path(ext);
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return p;
}

// Runs fn; lowbit::Error is the expected way to reject input.
template <class Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const lowbit::Error&) {
  }
}

}  // namespace lowbit::fuzz
