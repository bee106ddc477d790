# %% tags=["after:owner-waiting"]
import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:setup-done"]
print(duet.store.pandas)
heights_ptr = duet.store[0]
weights_ptr = duet.store[1]
print(heights_ptr)
print(weights_ptr)

# %%
# A pointer to a list of values gives pointers to each value.
for i in range(6):
    print("Pointer to Weight of person", i + 1, weights_ptr[i])
    print("Pointer to Height of person", i + 1, heights_ptr[i])


# %%
def BMI_calculator(w_ptr, h_ptr):
    # BMI = weight (kg) / height (cm)^2 * 10,000, computed where the data is
    bmi_ptr = w_ptr / (h_ptr * h_ptr) * 10000
    return bmi_ptr


def weight_status(w_ptr, h_ptr):
    # only yes/no answers leave the owner's machine, never a BMI, a weight or a height
    bmi_ptr = BMI_calculator(w_ptr, h_ptr)
    bands = [("Normal", 18.5, 25), ("Overweight", 25, 30), ("Obese", 30, 40)]
    for name, low, high in bands:
        inside = ((bmi_ptr >= low) * (bmi_ptr < high)).get(
            request_block=True, reason="is this person's BMI in the " + name + " band?"
        )
        if inside:
            return name
    return "Out of range"


# %%
for i in range(0, 6):
    bmi_ptr = BMI_calculator(weights_ptr[i], heights_ptr[i])

# %%
statuses = []
for i in range(0, 6):
    status = weight_status(weights_ptr[i], heights_ptr[i])
    print("Weight of Person", i + 1, "is", status)
    statuses.append(status)
