import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(range(50), [i * i for i in range(50)])
ax.set_title("bench")
fig.savefig("/mnt/data/chart.png" if __import__("os").path.isdir("/mnt/data") else "/tmp/bench-chart.png")
plt.close(fig)
