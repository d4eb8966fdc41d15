#include "lowbit/engine/autograd/node.h"

#include <unordered_map>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/reduce.h"

namespace lowbit {

namespace {
thread_local bool t_grad_enabled = true;
}
bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  t_ = t.detach();
  version_ = t.storage()->version();
}

Tensor SavedTensor::unpack(const char* op) const {
  LOWBIT_CHECK(!released_, op, ": backward through the graph a second time, but its saved tensors were freed; ",
               "pass retain_graph=true to the first backward");
  if (t_.defined())
    LOWBIT_CHECK(t_.storage()->version() == version_, op, ": a tensor saved for backward was modified in place ",
                 "(version ", t_.storage()->version(), ", saved at ", version_, ")");
  return t_;
}

// Moves this node's children out so that destroying a long chain is a loop, not a recursion.
void teardown_children(Node& n, std::vector<std::shared_ptr<Node>>& out) {
  for (auto& e : n.next_edges)
    if (e.node) out.push_back(std::move(e.node));
  n.next_edges.clear();
}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  teardown_children(*this, stack);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1) teardown_children(*n, stack);
  }
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad) {
  Tensor leaf(leaf_);
  // The incoming gradient can become .grad without a copy when nobody else can see its
  // buffer: the only handle is the engine's (plus `grad` itself when no cast was needed), it
  // is the sole user of its storage, and it is a plain dense tensor of the leaf's shape.
  const bool cast = grad.dtype() != leaf.dtype();
  Tensor g = cast ? grad.to(leaf.dtype()) : grad;
  const bool exclusive = g.impl_ptr().use_count() == (cast ? 1 : 2) && g.storage().use_count() == 1 &&
                         g.is_contiguous() && g.offset() == 0 && g.shape() == leaf.shape() && !g.requires_grad() &&
                         g.storage()->nbytes() == static_cast<size_t>(g.numel()) * (traits(g.dtype()).bits / 8);
  if (!leaf_->grad) {
    // Otherwise own a copy: backward may share g elsewhere.
    leaf_->grad = exclusive ? g.impl_ptr() : g.clone().impl_ptr();
  } else {
    Tensor acc(leaf_->grad);
    add_(acc, g);
  }
  Tensor acc(leaf_->grad);
  for (auto& hook : leaf_->grad_hooks) hook(acc);
  return {};
}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad) {
  LOWBIT_CHECK(!released_, name_, ": backward through the graph a second time, but its saved tensors were freed; ",
               "pass retain_graph=true to the first backward");
  return fn_(BackwardArgs{grad, saved, needs, name_});
}

void FunctionNode::release_saved() {
  for (auto& s : saved) s.release();
  released_ = true;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn()};
  auto& impl = t.impl();
  std::shared_ptr<Node> acc = impl.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    impl.grad_accumulator = acc;
  }
  return {acc};
}

Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, const std::vector<Tensor>& saved,
              BackwardFn backward) {
  if (!any_requires_grad(inputs)) return out;
  auto node = std::make_shared<FunctionNode>(op, std::move(backward));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    node->next_edges.push_back(gradient_edge(in));
    node->needs.push_back(node->next_edges.back().node != nullptr);
    if (in.defined())
      node->input_meta.push_back({in.shape(), in.dtype(), in.device()});
    else
      node->input_meta.push_back({{}, DType::f32, kCPU});
  }
  for (const Tensor& s : saved) node->saved.emplace_back(s);
  // A view of `out` may share its impl with an input (identity ops); give it a fresh impl.
  for (const Tensor& in : inputs)
    if (in.defined() && in.same(out)) out = make_view(out, out.shape(), out.strides(), out.offset());
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
  return out;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  LOWBIT_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots but ", grads.size(), " grads");
  NoGradGuard no_grad;
  std::unordered_map<Node*, Tensor> buffers;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    LOWBIT_CHECK(r.requires_grad(), "backward: tensor ", r.str(), " does not require grad");
    Tensor g = grads[i];
    if (!g.defined()) {
      LOWBIT_CHECK(r.numel() == 1, "backward: grad can be implied only for a one-element output, got ", r.str());
      g = ones_like(r);
    }
    LOWBIT_CHECK(g.shape() == r.shape(), "backward: grad shape ", shape_str(g.shape()), " != output shape ",
                 shape_str(r.shape()));
    Edge e = gradient_edge(r);
    auto it = buffers.find(e.node.get());
    if (it == buffers.end()) {
      buffers.emplace(e.node.get(), g);
      root_nodes.push_back(e.node);
    } else {
      it->second = add(it->second, g);
    }
  }

  // Count, for every reachable node, how many edges lead into it (iterative DFS).
  std::unordered_map<Node*, int> deps;
  {
    std::vector<Node*> stack;
    std::unordered_map<Node*, bool> seen;
    for (auto& n : root_nodes)
      if (!seen[n.get()]) {
        seen[n.get()] = true;
        stack.push_back(n.get());
      }
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& e : n->next_edges) {
        if (!e.node) continue;
        deps[e.node.get()] += 1;
        if (!seen[e.node.get()]) {
          seen[e.node.get()] = true;
          stack.push_back(e.node.get());
        }
      }
    }
  }

  std::vector<std::shared_ptr<Node>> ready;
  for (auto& n : root_nodes)
    if (deps[n.get()] == 0) ready.push_back(n);
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor grad = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    std::vector<Tensor> in_grads;
    if (grad.defined()) in_grads = node->apply(grad);
    grad = Tensor();
    if (!retain_graph) node->release_saved();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.node) continue;
      Tensor g = i < in_grads.size() ? in_grads[i] : Tensor();
      if (g.defined()) {
        const InputMeta& meta = node->input_meta[i];
        if (g.shape() != meta.shape) g = sum_to(g, meta.shape);
        if (g.dtype() != meta.dtype) g = g.to(meta.dtype);
        auto it = buffers.find(e.node.get());
        if (it == buffers.end() || !it->second.defined())
          buffers[e.node.get()] = g;
        else
          it->second = add(it->second, g);
      }
      if (--deps[e.node.get()] == 0) ready.push_back(e.node);  // may carry no grad: still unblocks its inputs
    }
  }
}

}  // namespace lowbit
