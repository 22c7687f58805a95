import Tensor
print(Tensor.ones([2]))
