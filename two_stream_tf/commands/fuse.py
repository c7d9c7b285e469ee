"""`two-stream fuse`: late fusion of per-video score files, with weights given or fitted, into a results table.

    two-stream fuse --scores=runs/rgb/evaluation_split1_test/scores.npz,runs/flow/evaluation_split1_test/scores.npz
    two-stream fuse --scores=rgb.npz,flow.npz --weights=tsn          # RGB:flow = 1:1.5 as TSN
    two-stream fuse --scores=rgb.npz,flow.npz --method=logit_sum     # the TF-slim project's sum of logits
    two-stream fuse --scores=rgb_test.npz,flow_test.npz \
        --fit_on=runs/rgb/evaluation_split1_validation/scores.npz,runs/flow/evaluation_split1_validation/scores.npz

`--method`: average (of softmax), weighted, logit_sum, vote (majority vote of the snippets' top-1); see
`two_stream_tf.evaluation.fusion`. Weights are given (`--weights`) or fitted on validation score files
(`--fit_on`, which training writes to `<model_dir>/evaluation_split<N>_validation/`) and then applied to the
test files: they are never fitted on the scores they are reported on. The files must score the same videos
over the same classes, with finite values. Prints top-1, top-5 and mean class accuracy of each stream and of
the fusion; `--output_dir` gets the fused scores, metrics and confusion matrix; `--results_table` gets a
`Run | Spatial | Temporal | Fusion | Weights` row (markdown, and JSON beside it).
"""
import os

from absl import flags

from two_stream_tf.commands._training_flags import parse
from two_stream_tf.errors import UserError

HELP = "fuse per-video score files (average, weighted, logit sum or vote; weights given or fitted on validation)"


def _define(fv):
    flags.DEFINE_list("scores", [], "Score files (.npz from `two-stream evaluate`) to fuse, e.g. spatial "
                      "then temporal.", flag_values=fv)
    flags.DEFINE_list("names", [], "A name per score file (default: Spatial,Temporal for two files).",
                      flag_values=fv)
    flags.DEFINE_list("weights", [], "Relative weights, one per file (default equal, 1:1); 'tsn' for "
                      "TSN's RGB:flow = 1:1.5.", flag_values=fv)
    flags.DEFINE_enum("method", None, fusion_methods(), "How to fuse: average (of softmax), weighted (softmax, "
                      "--weights or --fit_on), logit_sum (needs logits in the files), vote (majority vote of the "
                      "snippets' top-1, needs votes). Default: weighted with --weights or --fit_on, else average.",
                      flag_values=fv)
    flags.DEFINE_list("fit_on", [], "Validation score files (same order as --scores, e.g. "
                      "<model_dir>/evaluation_split1_validation/scores.npz) to fit the weights on by grid search; "
                      "the weights are then applied to --scores. Overrides --weights.", flag_values=fv)
    flags.DEFINE_alias("fit_weights_on", "fit_on", flag_values=fv)
    flags.DEFINE_enum("fit_metric", "top1", ("top1", "mean_class_accuracy", "top5"), "What --fit_on maximises.",
                      flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Write the fused scores.npz, metrics.json, "
                        "per_class_accuracy.json and confusion_matrix.png here.", flag_values=fv)
    flags.DEFINE_string("results_table", None, "Append a row to this markdown table (a .json twin is kept "
                        "beside it).", flag_values=fv)
    flags.DEFINE_string("run_name", None, "Name of the results-table row (default: the score files' folders).",
                        flag_values=fv)


def fusion_methods():
    from two_stream_tf.evaluation.fusion import METHODS
    return METHODS


def _check_outputs(fv):
    """One-line errors, before any work, for output paths that cannot be written."""
    if fv.output_dir and os.path.exists(fv.output_dir) and not os.path.isdir(fv.output_dir):
        raise UserError(f"--output_dir: {fv.output_dir} is a file; give a folder for the fused scores and metrics")
    if fv.results_table:
        if os.path.isdir(fv.results_table):
            raise UserError(f"--results_table: {fv.results_table} is a folder; give a markdown file, e.g. "
                            f"{os.path.join(fv.results_table, 'results.md')}")
        parent = os.path.dirname(os.path.abspath(fv.results_table))
        if not os.path.isdir(parent):
            raise UserError(f"--results_table: folder not found: {parent}")


def _method(fv):
    if fv.method is None:
        return "weighted" if (fv.weights or fv.fit_on) else "average"
    if fv.method == "average" and (fv.weights or fv.fit_on):
        given = "--fit_on" if fv.fit_on else f"--weights={','.join(fv.weights)}"
        raise UserError(f"--method=average weighs the files equally; {given} needs --method=weighted (or "
                        "logit_sum / vote)")
    return fv.method


def _check_held_out(validation, test, fit_paths, test_paths):
    """Refuses validation files that share videos with the test files: weights must be fitted elsewhere."""
    shared = sorted(set(validation[0].videos) & set(test[0].videos))
    if shared:
        raise UserError(f"--fit_on: {len(shared)} of the {len(validation[0])} videos of {fit_paths[0]} are also in "
                        f"{test_paths[0]} (e.g. {shared[0]}): fit the weights on validation scores, not on the "
                        "scores they are reported on")


def _weights(values, count):
    if not values:
        return None
    if len(values) == 1 and values[0].lower() == "tsn":
        if count != 2:
            raise UserError(f"--weights=tsn is RGB:flow = 1:1.5 for two score files, got {count} files")
        from two_stream_tf.evaluation.fusion import TSN_WEIGHTS
        return TSN_WEIGHTS
    try:
        weights = tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"--weights: expected numbers or 'tsn', got {','.join(values)!r}") from None
    if len(weights) != count:
        raise UserError(f"--weights: {len(weights)} weight(s) for {count} score files")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise UserError(f"--weights: must be non-negative and not all zero, got {','.join(values)}")
    return weights


def _load_all(paths, flag):
    from two_stream_tf.evaluation.scores import load_scores
    loaded = []
    for path in paths:
        try:
            loaded.append(load_scores(path))
        except UserError as error:
            raise UserError(f"--{flag}: {error}") from None
    return loaded


def main(argv, prog="two-stream fuse"):
    """Parses flags, fuses, prints and writes. Returns 0 (or raises UserError for bad input)."""
    fv = flags.FlagValues()
    _define(fv)
    if parse(fv, argv, prog) is None:
        return 0
    if len(fv.scores) < 2:
        raise UserError(f"--scores: give at least two score files, got {len(fv.scores)}")
    names = fv.names or (["Spatial", "Temporal"] if len(fv.scores) == 2 else
                         [os.path.splitext(os.path.basename(p))[0] for p in fv.scores])
    if len(names) != len(fv.scores):
        raise UserError(f"--names: {len(names)} name(s) for {len(fv.scores)} score files")
    weights = _weights(fv.weights, len(fv.scores))
    if fv.fit_on and len(fv.fit_on) != len(fv.scores):
        raise UserError(f"--fit_on: {len(fv.fit_on)} validation file(s) for {len(fv.scores)} score files")
    method = _method(fv)
    _check_outputs(fv)

    from two_stream_tf.evaluation import fusion, metrics, report
    score_sets = _load_all(fv.scores, "scores")
    try:
        fusion.check_method(method, score_sets, fv.scores)
        aligned = fusion.align(score_sets, fv.scores)
    except UserError as error:
        raise UserError(f"--scores: {error}") from None
    if fv.fit_on:
        validation = _load_all(fv.fit_on, "fit_on")
        if list(validation[0].classes) != list(aligned[0].classes):
            raise UserError(f"--fit_on: {fv.fit_on[0]} uses other classes than {fv.scores[0]} "
                            f"({len(validation[0].classes)} vs {len(aligned[0].classes)})")
        _check_held_out(validation, aligned, fv.fit_on, fv.scores)
        try:
            weights, value = fusion.fit_weights(validation, metric=fv.fit_metric, names=fv.fit_on, method=method)
        except UserError as error:
            raise UserError(f"--fit_on: {error}") from None
        print(f"{prog}: {method} fusion weights {fusion.format_weights(weights)} fitted on {len(validation[0])} "
              f"validation videos ({fv.fit_metric} {100 * value:.2f} %), applied to {len(aligned[0])} videos")
    weights = weights or tuple(1.0 for _ in aligned)
    fused = fusion.fuse(aligned, weights, method=method)
    stream_metrics = [metrics.compute_metrics(s) for s in aligned]
    fused_metrics = metrics.compute_metrics(fused)
    width = max(len(n) for n in names + ["Fusion"])
    for name, result in zip(names, stream_metrics):
        print(f"{name:<{width}}  {result.summary()}")
    print(f"{'Fusion':<{width}}  {fused_metrics.summary()}  {method}, weights {fusion.format_weights(weights)}")
    if fv.output_dir:
        try:
            report.write_report(fv.output_dir, fused, title=f"{method} fusion {fusion.format_weights(weights)}",
                                protocol={"fused": list(fv.scores), "names": names, "method": method,
                                          "weights": list(weights), "fitted_on": list(fv.fit_on) or None})
            from two_stream_tf.training import atomic
            atomic.write_text(os.path.join(fv.output_dir, "flags.cfg"), fv.flags_into_string())
        except OSError as error:
            raise UserError(f"--output_dir: cannot write {fv.output_dir}: {error.strerror or error}") from None
        print(f"{prog}: wrote {fv.output_dir}")
    if fv.results_table:
        json_path = os.path.splitext(fv.results_table)[0] + ".json"
        run = fv.run_name or " + ".join(os.path.basename(os.path.dirname(os.path.abspath(p))) for p in fv.scores)
        try:
            fusion.append_results_row(fv.results_table, json_path, run, names, stream_metrics, fused_metrics,
                                      weights, method=method)
        except OSError as error:
            raise UserError(f"--results_table: cannot write {error.filename or fv.results_table}: "
                            f"{error.strerror or error}") from None
        print(f"{prog}: appended '{run}' to {fv.results_table} and {json_path}")
    return 0
