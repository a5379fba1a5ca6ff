"""Lightning callbacks: throughput/MFU, frame panels, (later) attention statistics and band dynamics."""
