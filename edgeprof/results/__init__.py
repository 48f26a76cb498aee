"""Result rows: the column schema (name, dtype, meaning), the rows, and the run recorder that writes a run's
CSV, per-op CSV and metadata."""
