#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace olmo {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string checkpoint_name(int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step-%06lld", (long long)step);
    return buf;
}

const char* kCsvHeader = "step,tokens,loss,lr,grad_norm,heldout_loss,tokens_per_s,skipped";

}  // namespace

std::string find_latest_checkpoint(const std::string& output_dir) {
    const fs::path latest = fs::path(output_dir) / "checkpoints" / "latest";
    std::ifstream in(latest);
    std::string name;
    if (!in || !std::getline(in, name) || name.empty()) return "";
    const fs::path dir = fs::path(output_dir) / "checkpoints" / name;
    if (!fs::exists(dir / "trainer_state.json"))
        fail("[train] ", latest.string(), " names ", name, ", which is incomplete");
    return dir.string();
}

Trainer::Trainer(Model& model, const TokenStream& data, TrainOptions options)
    : model_(model),
      data_(data),
      opt_(std::move(options)),
      loader_(data, opt_.seq_len, opt_.batch_size, opt_.data_seed, opt_.heldout_fraction),
      grads_(model.config(), model.device(), DType::f32),
      adamw_(model.weights(), opt_.adamw),
      arena_(model.device()) {
    if (opt_.steps < 1) fail("[train] --steps must be >= 1");
    if (opt_.grad_accum < 1) fail("[train] --grad-accum must be >= 1");
    if (data.vocab_size() > uint64_t(model.config().vocab_size))
        fail("[train] the data's tokenizer has ", data.vocab_size(),
             " tokens but the model's vocabulary is ", model.config().vocab_size);
    opt_.schedule.total = opt_.steps;
    opt_.schedule.validate();
    std::error_code ec;
    fs::create_directories(fs::path(opt_.output_dir) / "checkpoints", ec);
    if (ec) fail("[train] cannot create ", opt_.output_dir, ": ", ec.message());
    // Leftovers of an interrupted checkpoint write or deletion (".tmp-" names) are not checkpoints.
    for (const auto& e : fs::directory_iterator(fs::path(opt_.output_dir) / "checkpoints"))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
}

void Trainer::resume(const std::string& checkpoint_in) {
    std::string checkpoint = checkpoint_in;
    if (fs::exists(fs::path(checkpoint) / "checkpoints"))
        checkpoint = find_latest_checkpoint(checkpoint);
    if (checkpoint.empty()) fail("[train] --resume: no checkpoint in ", checkpoint_in);
    std::ifstream in(fs::path(checkpoint) / "trainer_state.json");
    if (!in) fail("[train] ", checkpoint, ": no trainer_state.json");
    json st;
    try {
        st = json::parse(in);
    } catch (const json::exception& e) {
        fail("[train] ", checkpoint, "/trainer_state.json: ", e.what());
    }
    for (const char* key : {"seq_len", "batch_size", "grad_accum"}) {
        const int64_t want = key == std::string("seq_len")      ? opt_.seq_len
                             : key == std::string("batch_size") ? opt_.batch_size
                                                                : opt_.grad_accum;
        if (st.at(key).get<int64_t>() != want)
            fail("[train] --resume: the checkpoint was made with ", key, " = ",
                 st.at(key).get<int64_t>(), ", this run asks for ", want);
    }
    model_.weights().load((fs::path(checkpoint) / "model.safetensors").string());
    SafetensorsReader opt =
        SafetensorsReader::open((fs::path(checkpoint) / "optimizer.safetensors").string());
    copy_tensor(adamw_.m(), opt.get("adamw.m").view());
    copy_tensor(adamw_.v(), opt.get("adamw.v").view());
    adamw_.set_steps(st.at("adamw_steps").get<int64_t>());
    monitor_.from_json(st.at("skip_step"));
    loader_.set_position(
        {st.at("loader").at("epoch").get<int64_t>(), st.at("loader").at("index").get<int64_t>()});
    step_ = st.at("step").get<int64_t>();
    tokens_seen_ = st.at("tokens").get<int64_t>();
    // Metrics after the checkpoint's step belong to the run being replaced.
    const fs::path csv = fs::path(opt_.output_dir) / "metrics.csv";
    std::ifstream old(csv);
    std::string line, kept = std::string(kCsvHeader) + "\n";
    std::getline(old, line);
    while (std::getline(old, line))
        if (!line.empty() && std::stoll(line) <= step_) kept += line + "\n";
    write_file_atomic(csv.string(), kept);
}

std::string Trainer::latest_checkpoint() const {
    return find_latest_checkpoint(opt_.output_dir);
}

std::string Trainer::save_checkpoint() {
    const fs::path root = fs::path(opt_.output_dir) / "checkpoints";
    const std::string name = checkpoint_name(step_);
    const fs::path tmp = root / (".tmp-" + name);
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
    model_.weights().save((tmp / "model.safetensors").string(), DType::f32);
    SafetensorsWriter w;
    w.add("adamw.m", adamw_.m());
    w.add("adamw.v", adamw_.v());
    w.write((tmp / "optimizer.safetensors").string());
    write_file_atomic((tmp / "config.json").string(), model_.config().raw.dump(2) + "\n");
    const LoaderPosition p = loader_.position();
    json st = {{"step", step_},
               {"tokens", tokens_seen_},
               {"adamw_steps", adamw_.steps()},
               {"loader", {{"epoch", p.epoch}, {"index", p.index}}},
               {"skip_step", monitor_.to_json()},
               {"seq_len", opt_.seq_len},
               {"batch_size", opt_.batch_size},
               {"grad_accum", opt_.grad_accum}};
    write_file_atomic((tmp / "trainer_state.json").string(), st.dump(2) + "\n");
    sync_directory(tmp.string());
    // A checkpoint directory goes away by being renamed to a ".tmp-" name first (one atomic step),
    // then deleted: a process killed while deleting leaves a leftover that the next start clears,
    // never a half-deleted directory under a checkpoint's name.
    auto discard = [&](const fs::path& dir) {
        const fs::path doomed = root / (".tmp-old-" + dir.filename().string());
        fs::remove_all(doomed, ec);
        fs::rename(dir, doomed, ec);
        if (!ec) fs::remove_all(doomed, ec);
    };
    const fs::path final_dir = root / name;
    if (fs::exists(final_dir)) discard(final_dir);  // the same step saved again after a resume
    fs::rename(tmp, final_dir);
    sync_directory(root.string());
    write_file_atomic((root / "latest").string(), name + "\n");
    // Keep the newest few complete checkpoints.
    std::vector<fs::path> all;
    for (const auto& e : fs::directory_iterator(root))
        if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0)
            all.push_back(e.path());
    std::sort(all.begin(), all.end());
    for (size_t i = 0; i + size_t(std::max<int64_t>(1, opt_.keep_checkpoints)) < all.size(); ++i)
        discard(all[i]);
    return final_dir.string();
}

double Trainer::heldout_loss() {
    if (loader_.heldout_rows() == 0) return -1;
    const int64_t B = opt_.batch_size, T = opt_.seq_len;
    OwnedTensor ids(DType::i32, {B, T}), targets(DType::i32, {B, T});
    double sum = 0;
    int64_t count = 0;
    const int64_t batches =
        std::max<int64_t>(1, std::min(opt_.eval_batches, (loader_.heldout_rows() + B - 1) / B));
    for (int64_t i = 0; i < batches; ++i) {
        loader_.heldout(i * B, B, ids->as<int32_t>(), targets->as<int32_t>());
        const LossResult r = evaluate_loss(model_, ids, targets, opt_.loss, arena_);
        sum += r.loss * double(r.counted);
        count += r.counted;
        arena_.reset();
    }
    return count ? sum / double(count) : -1;
}

void Trainer::write_metrics(const StepMetrics& m) {
    const fs::path csv = fs::path(opt_.output_dir) / "metrics.csv";
    const bool fresh = !fs::exists(csv);
    std::ofstream out(csv, std::ios::app);
    if (fresh) out << kCsvHeader << "\n";
    char line[256];
    std::snprintf(line, sizeof line, "%lld,%lld,%.6f,%.6g,%.6f,%s,%.1f,%d\n", (long long)m.step,
                  (long long)m.tokens, m.loss, m.lr, m.grad_norm,
                  m.heldout_loss >= 0 ? std::to_string(m.heldout_loss).c_str() : "", m.tokens_per_s,
                  m.skipped ? 1 : 0);
    out << line;
}

void Trainer::plot() const {
    const fs::path dir(opt_.output_dir);
    const std::string script =
        "set terminal pngcairo size 900,520 font ',10'\n"
        "set output '" +
        (dir / "loss.png").string() +
        "'\n"
        "set datafile separator ','\nset key top right\nset grid\n"
        "set xlabel 'step'\nset ylabel 'loss (nats/token)'\n"
        "plot '" +
        (dir / "metrics.csv").string() +
        "' using 1:3 every ::1 with lines lw 1 title 'train', \\\n"
        "     '' using 1:($6 > 0 ? $6 : 1/0) every ::1 with linespoints pt 7 ps 0.6 lw 2 title "
        "'held-out'\n";
    const std::string script_path = (dir / "loss.gnuplot").string();
    write_file_atomic(script_path, script);
    const std::string cmd = "gnuplot '" + script_path + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0)
        std::fprintf(stderr, "train: gnuplot failed or is missing; metrics.csv has the curves\n");
}

void Trainer::run(const std::function<void(const StepMetrics&)>& on_step) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const int64_t B = opt_.batch_size, T = opt_.seq_len;
    OwnedTensor ids(DType::i32, {B, T}), targets(DType::i32, {B, T});
    Progress progress("train", double(opt_.steps), "step", opt_.progress);
    progress.set(double(step_));
    auto last = clock::now();
    while (step_ < opt_.steps) {
        StepMetrics m;
        ops::fill(grads_.flat(), 0.0f);
        double loss = 0;
        for (int64_t micro = 0; micro < opt_.grad_accum; ++micro) {
            loader_.next(ids->as<int32_t>(), targets->as<int32_t>());
            const LossResult r = forward_backward(model_, ids, targets, grads_,
                                                  1.0f / float(opt_.grad_accum), opt_.loss, arena_);
            arena_.reset();
            loss += r.loss / double(opt_.grad_accum);
        }
        m.grad_norm = AdamW::grad_norm(grads_);
        m.lr = opt_.schedule.at(step_);
        m.loss = loss;
        m.skipped = opt_.skip_steps && monitor_.should_skip(loss, m.grad_norm);
        if (!m.skipped) adamw_.step(model_.weights(), grads_, m.lr, m.grad_norm);
        ++step_;
        tokens_seen_ += B * T * opt_.grad_accum;
        const auto now = clock::now();
        m.step = step_;
        m.tokens = tokens_seen_;
        m.tokens_per_s =
            double(B * T * opt_.grad_accum) / std::chrono::duration<double>(now - last).count();
        last = now;
        const double minutes = std::chrono::duration<double>(now - start).count() / 60.0;
        const bool out_of_time = (opt_.max_minutes > 0 && minutes >= opt_.max_minutes) ||
                                 (opt_.stop_at_step > 0 && step_ >= opt_.stop_at_step);
        const bool final_step = step_ == opt_.steps || out_of_time;
        if ((opt_.eval_every > 0 && step_ % opt_.eval_every == 0) || final_step)
            m.heldout_loss = heldout_loss();
        write_metrics(m);
        char suffix[160];
        std::snprintf(suffix, sizeof suffix, "loss %.4f  lr %.2e  gnorm %.3f  %s tok/s%s", m.loss,
                      m.lr, m.grad_norm, human_count(m.tokens_per_s).c_str(),
                      m.skipped ? "  (skipped)" : "");
        progress.set_suffix(suffix);
        progress.set(double(step_));
        if (m.heldout_loss >= 0 && opt_.progress)
            std::fprintf(stderr, "%sstep %lld: train loss %.4f, held-out loss %.4f\n",
                         isatty(2) ? "\r\033[K" : "", (long long)step_, m.loss, m.heldout_loss);
        if (on_step) on_step(m);
        if ((opt_.checkpoint_every > 0 && step_ % opt_.checkpoint_every == 0) || final_step)
            save_checkpoint();
        if (out_of_time) {
            if (opt_.progress && opt_.max_minutes > 0 && minutes >= opt_.max_minutes)
                std::fprintf(stderr, "\ntrain: time limit of %.1f minutes reached at step %lld\n",
                             opt_.max_minutes, (long long)step_);
            break;
        }
    }
    progress.finish();
    save_model(model_, (fs::path(opt_.output_dir) / "model").string(), DType::f32);
    plot();
}

}  // namespace olmo
