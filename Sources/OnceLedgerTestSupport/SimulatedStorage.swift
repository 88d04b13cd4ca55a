// Simulated storage (in progress)
