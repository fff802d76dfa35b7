"""A small colour, non-square DRAW for the speed-path tests, and its loss with every gradient."""


from draw_service.model import DRAWConfig

CFG = DRAWConfig(T=4, enc_size=24, dec_size=16, z_size=6, read_n=3, write_n=4)
SHAPE = (3, 12, 20)


def loss_and_grads(model, x, eps):
    model.zero_grad()
    out = model(x, eps)
    out.loss.mean().backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
