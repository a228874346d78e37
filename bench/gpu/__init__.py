"""The GPU proof kit: one prepared command (bench/gpu/run.sh) that measures the GPU path in a single,
short device call, and rehearses the same code on CPU in CI. See bench/gpu/README.md."""
