"""The maths: method specs, statistics, scoring, centring, Sinkhorn, the matrix and vector APIs, tuning."""
