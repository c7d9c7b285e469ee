"""Training: distribution strategies, learning-rate schedules, callbacks and the fit loop.

Modules (imported one by one, so that light users such as `cluster` do not load TensorFlow):
  fit          `TrainConfig` and `train(config)`: indices, strategy, model, datasets, `model.fit`, run folder
  strategy     `create_strategy(name)`: auto / one_device / mirrored / multi_worker / tpu; `split_cpu`
  schedules    `build_schedule`: constant, step (TSN), cosine, linear warm-up; `scaled_learning_rate` (linear rule)
  losses       sparse categorical cross-entropy with label smoothing
  callbacks    atomic BackupAndRestore, named checkpoints, resumable CSV log, TensorBoard images
  health       `TrainingHealth`: warns (or stops) when a run collapses, naming the likely cause
  summaries    TensorBoard scalars and images without the `tensorboard` package
  checkpoints  checkpoint names (`007.0.8123.0.7990.keras`), finding and saving models atomically
  atomic       write-to-temp-then-`os.replace` file writes
  cluster      TF_CONFIG for multi-worker training (host lists, SLURM)
"""
