"""lstmjax benchmarks: python -m benchmarks.<script>; see benchmarks/results/README.md."""
