"""What every run shares, search and retraining alike: the run directory, checkpoints and resume, torchrun's
process group, and the scaffolding of a run's life (:class:`darts.run.session.Run`)."""
