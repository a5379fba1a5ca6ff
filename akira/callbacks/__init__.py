"""Lightning callbacks: throughput/MFU, frame panels, attention statistics, RNG states in checkpoints."""
