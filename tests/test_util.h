// Helpers shared by the test suites: fresh per-test temporary directories (ctest runs tests in
// parallel processes, so each test names its own) and the message of an expected exception.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "lowbit/engine/error.h"

namespace lowbit::test {

// An empty directory under gtest's temp dir, recreated on every call.
inline std::string temp_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "lowbit_" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// A checked-in file's bytes; fails the test when it cannot be read.
inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

// The what() of the lowbit::Error f throws; fails the test (and returns "") when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

}  // namespace lowbit::test
