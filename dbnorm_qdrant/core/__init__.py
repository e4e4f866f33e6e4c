"""The maths: method specs, statistics, scoring, centering, Sinkhorn, the matrix and vector APIs, tuning."""
