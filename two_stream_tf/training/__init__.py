"""Training: distribution strategies, learning-rate schedules, callbacks and the fit loop.

Modules (imported one by one, so that light users such as `cluster` do not load TensorFlow):
  fit          `TrainConfig` and `train(config, callbacks=[...])`: indices, strategy, model, datasets,
               `model.fit`, run folder
  warm_start   `init_from`: a new run from a trained stream model (all weights, or re-headed for new classes)
  finetune     staged fine-tuning (`classifier@0,blocks:2@10`): trainable layers per epoch, one optimizer
  strategy     `create_strategy(name)`: auto / one_device / mirrored / multi_worker / tpu; `split_cpu`
  schedules    `build_schedule`: constant, step (TSN), cosine, linear warm-up; `scaled_learning_rate` (linear rule)
  losses       sparse categorical cross-entropy with label smoothing
  callbacks    named checkpoints (keep the newest N), resumable CSV log, TensorBoard images
  backup       the training state a rerun resumes from (position, optimizer step, dropout generators)
  run_folder   the model_dir: usable path, one run at a time (lock), resume config check, done marker
  health       `TrainingHealth`: warns (or stops) when a run collapses, naming the likely cause
  summaries    TensorBoard scalars and images without the `tensorboard` package
  checkpoints  checkpoint names (`007.0.8123.0.7990.keras`), finding and saving models atomically
  atomic       write-to-temp-then-`os.replace` file writes (also on tf.io.gfile paths), file generations
  cluster      TF_CONFIG for multi-worker training (host lists, SLURM)
"""
