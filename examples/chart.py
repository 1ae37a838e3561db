# A chart the way model-written code makes one: relative paths mean /mnt/data.
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

rng = np.random.default_rng(7)
sales = pd.DataFrame({
    "month": pd.date_range("2026-01-01", periods=12, freq="MS").strftime("%b"),
    "revenue": (100 + rng.normal(0, 8, 12).cumsum()).round(1),
})
fig, ax = plt.subplots(figsize=(7, 4))
ax.bar(sales["month"], sales["revenue"], color="#4C72B0")
ax.set_title("Monthly revenue")
ax.set_ylabel("k$")
fig.tight_layout()
fig.savefig("chart.png", dpi=100)
plt.close(fig)
sales.to_csv("sales.csv", index=False)
print(f"best month: {sales.loc[sales.revenue.idxmax(), 'month']}")
sales.describe()
