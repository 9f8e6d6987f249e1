"""Training: the configuration (`config`) and reading it (`recipes`), the loop (`loop`), one
step (`step`, `loss`), the data of a run (`sources`), frozen-encoder wiring (`frozen`),
validation over ranks (`validation`), the process group (`distributed`), the run folder
(`rundir`), checkpoints (`checkpoint`) and what a run leaves behind (`outputs`)."""
