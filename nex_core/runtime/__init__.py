"""Running a model: device and precision choice, run setup from a config, checkpoints, opening a trained run
and rendering whole images in bounded memory."""
