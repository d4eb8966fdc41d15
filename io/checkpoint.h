// Training checkpoints that resume bit-exactly and are never loaded half-written or corrupted.
//
// Components register what they persist (the model, the optimizer, RNG states, the data
// loader position, the LR schedule, and later quantizer state and the resolved config): each
// gives tensors and/or a JSON document and takes them back on load. A checkpoint is one
// directory per step:
//
//   <root>/step_00000120/
//     <component>.safetensors   tensors; __metadata__ holds each tensor's CRC-32C
//     <component>.json          the component's JSON document
//     manifest.json             format, version, step, and every file's size and CRC-32C
//     COMPLETE                  written last: the manifest's CRC-32C
//
// Saving writes into step_N.tmp/ (each file atomically, fsynced), writes COMPLETE last, then
// renames the directory to step_N and fsyncs the root, then deletes all but the newest
// keep_last complete checkpoints. Loading verifies the marker, the manifest, every file's size
// and checksum and every tensor's checksum before any component sees any state; resume() walks
// from the newest checkpoint back to the first one that verifies, reporting each one it skips.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::io {

// Thrown when a checkpoint fails verification (as opposed to a component rejecting valid
// state, e.g. a shape mismatch, which is a plain Error).
class CorruptCheckpoint : public Error {
 public:
  using Error::Error;
};

struct ComponentState {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::string json = "{}";  // a JSON document (object)
};

struct CheckpointOptions {
  int64_t keep_last = 3;  // complete checkpoints kept after each save (>= 1)
};

class CheckpointManager {
 public:
  using SaveFn = std::function<ComponentState()>;
  using LoadFn = std::function<void(const ComponentState&)>;
  // Reports checkpoints skipped by resume() (one line each); default: stderr.
  using WarnFn = std::function<void(const std::string&)>;

  explicit CheckpointManager(std::string root, CheckpointOptions opts = {});

  // name: [A-Za-z0-9_-]+, unique. Components are saved and loaded in registration order.
  void register_component(const std::string& name, SaveFn save, LoadFn load);
  void set_warning_handler(WarnFn warn) { warn_ = std::move(warn); }

  // Writes step_<step> (replacing an existing one for the same step) and prunes; returns its path.
  std::string save(int64_t step);
  // Loads the newest checkpoint that verifies; returns its step, or nullopt when there is none.
  std::optional<int64_t> resume();
  // Verifies and loads one checkpoint directory; throws CorruptCheckpoint naming file and reason.
  void load(const std::string& dir);
  // Verifies the whole checkpoint, then loads only the registered components (each must be in
  // it): how tools read a model out of a training checkpoint. Returns its step.
  int64_t load_registered(const std::string& dir);
  // Throws CorruptCheckpoint if dir does not verify; returns its step.
  int64_t verify(const std::string& dir) const;

  // Steps of the directories that carry a COMPLETE marker, ascending (not verified).
  std::vector<int64_t> complete_steps() const;
  std::string dir_for(int64_t step) const;
  const std::string& root() const { return root_; }

 private:
  struct Component {
    std::string name;
    SaveFn save;
    LoadFn load;
  };
  std::vector<ComponentState> read_verified(const std::string& dir, int64_t* step, bool registered_subset) const;
  void prune();

  std::string root_;
  CheckpointOptions opts_;
  std::vector<Component> components_;
  WarnFn warn_;
};

}  // namespace lowbit::io
