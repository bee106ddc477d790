# %%
import torch as th
from sklearn import datasets

import duet as sy

# %%
duet = sy.launch_duet(loopback=True)

# %%
iris = datasets.load_iris()
X, y = iris.data, iris.target
print(X[0:5])
print(y)
print("Length of dataset:", len(X))

# %%
X = th.FloatTensor(X)
y = th.FloatTensor(y)
X = X.tag("iris-data")
y = y.tag("iris-target")
X = X.describe(
    "150 iris flowers, 4 features: sepal length (cm), sepal width (cm), petal length (cm), "
    "petal width (cm)"
)
y = y.describe("Species of each flower: 0 setosa, 1 versicolour, 2 virginica")

# %%
data_pointer = X.send(duet, pointable=True)
target_pointer = y.send(duet, pointable=True)
print(duet.store.pandas)

# %% tags=["setup-done"]
duet.requests.add_handler(action="accept")
