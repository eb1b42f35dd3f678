/* examples/gan.c: a GAN on Fabric: two models and two optimizers, each pair set up with
 * wf_fabric_setup (Fabric's `G, opt_g = fabric.setup(G, opt_g)` twice), trained with the
 * usual alternating updates (the DCGAN recipe of Lightning's Fabric GAN example, with small
 * MLPs so that it runs in seconds on a CPU).
 *
 *   gan [--steps 400] [--batch 64] [--lr 2e-4] [--latent 64] [--data DIR] [--seed S]
 *       [--accelerator auto|cpu|cuda] [--precision NAME] [--log-every 50]
 *
 * Generator: z (latent) -> 256 -> ReLU -> 784 -> tanh (an image in [-1, 1]).
 * Discriminator: image -> 256 -> GELU -> 1 (a logit: real or fake).
 * Each step:
 *   D: maximize log D(x) + log(1 - D(G(z)))   (BCE on real images labelled 1, fakes labelled 0)
 *   G: maximize log D(G(z))                    (BCE on fakes labelled 1: the non-saturating loss)
 * Prints the losses and the mean D outputs on real and fake images, then one JSON line
 * {"d_loss":..,"g_loss":..,"steps":..}. */
#include "weft/weft.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/fabric.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool parse_i64(const char *s, int64_t lo, int64_t *out) {
    if (!*s || isspace((unsigned char)*s)) return false;   /* strto* would skip the spaces */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return false;
    *out = v;
    return true;
}

static bool parse_pos(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return false;   /* strto* would skip the spaces */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0)) return false;
    *out = v;
    return true;
}

static wf_optimizer *adam_for(wf_module *m, double lr) {
    wf_tensor *params[16];
    int n = wf_module_parameters(m, params, NULL, 16);
    /* the betas GANs usually train with (DCGAN): a short memory for the first moment */
    return wf_adam_new(params, n, &(wf_adam_opts){ .lr = lr, .betas = { 0.5, 0.999 } });
}

/* mean of sigmoid(logits): how "real" the discriminator finds a batch */
static double mean_prob(wf_tensor *logits) {
    double p = 0;
    WF_NO_GRAD { p = wf_item(wf_mean_all(wf_sigmoid(logits))); }
    return p;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--steps N] [--batch B] [--lr X] [--latent Z] [--data DIR] [--seed S] "
                    "[--accelerator auto|cpu|cuda] [--precision NAME] [--log-every N]\n", argv0);
}

int main(int argc, char **argv) {
    const char *data = NULL, *accelerator = "auto", *precision = "32-true";
    int64_t steps = 400, batch = 64, latent = 64, log_every = 50, seed = 42;
    double lr = 2e-4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(argv[0]); return 0; }
        static const char *const value_flags[] = { "--steps", "--batch", "--latent", "--log-every", "--seed", "--lr", "--data", "--accelerator", "--precision", NULL };
        bool known = false;
        for (const char *const *f = value_flags; *f; f++) known = known || !strcmp(a, *f);
        if (!known) { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); usage(argv[0]); return 2; }
        bool ok = true;
        if (!strcmp(a, "--steps")) ok = parse_i64(v, 1, &steps);
        else if (!strcmp(a, "--batch")) ok = parse_i64(v, 1, &batch);
        else if (!strcmp(a, "--latent")) ok = parse_i64(v, 1, &latent);
        else if (!strcmp(a, "--log-every")) ok = parse_i64(v, 1, &log_every);
        else if (!strcmp(a, "--seed")) ok = parse_i64(v, 0, &seed);
        else if (!strcmp(a, "--lr")) ok = parse_pos(v, &lr);
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--accelerator")) accelerator = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else { fprintf(stderr, "error: unknown option %s\n", a); usage(argv[0]); return 2; }
        if (!ok) { fprintf(stderr, "error: bad value for %s: '%s'\n", a, v); usage(argv[0]); return 2; }
        i++;
    }

    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = accelerator, .precision = precision });
    if (!fab) { fprintf(stderr, "error: %s\n", wf_error_message()); return 2; }
    wf_seed_everything((uint64_t)seed, true);

    /* images scaled to [-1, 1] (mean 0.5, std 0.5), the generator's tanh range */
    wf_dataset train;
    if (wf_fashion_mnist(data, true, 0.5, 0.5, &train)) {
        fprintf(stderr, "error: %s\n(install Debian's dataset-fashion-mnist or pass --data DIR)\n", wf_error_message());
        wf_fabric_free(fab);
        return 1;
    }
    wf_fabric_loader *dl = wf_fabric_setup_dataloader(fab, wf_dataloader_new(&train, &(wf_dataloader_opts){
        .batch_size = batch, .shuffle = true, .drop_last = true, .seed = (uint64_t)seed + 1, .num_workers = 1 }), NULL);

    wf_module *G = wf_sequential_new(4, wf_linear_new(latent, 256, true), wf_relu_new(),
                                     wf_linear_new(256, 784, true), wf_tanh_new());
    wf_module *D = wf_sequential_new(4, wf_flatten_new(1, -1), wf_linear_new(784, 256, true), wf_gelu_new(WF_GELU_NONE),
                                     wf_linear_new(256, 1, true));
    wf_optimizer *opt_g = G ? adam_for(G, lr) : NULL, *opt_d = D ? adam_for(D, lr) : NULL;
    /* two models, two optimizers: one setup per pair */
    if (!dl || !opt_g || !opt_d || wf_fabric_setup(fab, G, &opt_g, 1, NULL) || wf_fabric_setup(fab, D, &opt_d, 1, NULL)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    printf("generator: %lld parameters, discriminator: %lld parameters, %s on %s\n",
           (long long)wf_module_num_parameters(G), (long long)wf_module_num_parameters(D),
           wf_fabric_precision_name(fab), wf_fabric_accelerator_name(fab));

    double t0 = now(), d_loss = 0, g_loss = 0;
    int64_t step = 0, epoch = 0;
    int rc = 0;
    wf_fabric_loader_set_epoch(dl, 0);
    while (step < steps && rc >= 0) {
        wf_scope_begin();
        wf_tensor *b[2];
        rc = wf_fabric_loader_next(dl, b);
        if (rc == 0) {                       /* end of an epoch: start the next one */
            rc = wf_fabric_loader_set_epoch(dl, (uint64_t)++epoch);
            wf_scope_end();
            continue;
        }
        if (rc < 0) { wf_scope_end(); break; }
        wf_tensor *real = b[0];
        int64_t n = wf_size(real, 0);
        /* labels and noise made on the Fabric's device */
        wf_tensor *ones = wf_fabric_to_device(fab, wf_ones(WF_SHAPE(n, 1), WF_F32));
        wf_tensor *zeros = wf_fabric_to_device(fab, wf_zeros(WF_SHAPE(n, 1), WF_F32));
        wf_tensor *z = wf_fabric_to_device(fab, wf_randn(WF_SHAPE(n, latent), WF_F32));

        /* (1) discriminator: real images -> 1, generated images -> 0 */
        wf_optimizer_zero_grad(opt_d, true);
        wf_tensor *d_real = wf_module_forward(D, real);
        wf_tensor *loss_real = wf_binary_cross_entropy_with_logits(d_real, ones, NULL);
        if (!loss_real || wf_fabric_backward(fab, loss_real, D)) rc = -1;
        wf_tensor *fake = rc < 0 ? NULL : wf_module_forward(G, z);
        wf_tensor *d_fake = fake ? wf_module_forward(D, wf_detach(fake)) : NULL;   /* no gradient into G here */
        wf_tensor *loss_fake = d_fake ? wf_binary_cross_entropy_with_logits(d_fake, zeros, NULL) : NULL;
        if (rc < 0 || !loss_fake || wf_fabric_backward(fab, loss_fake, D) || wf_fabric_step(fab, opt_d, NULL)) rc = -1;

        /* (2) generator: make the discriminator call the fakes real */
        wf_tensor *loss_g = NULL, *d_gen = NULL;
        if (rc >= 0) {
            wf_optimizer_zero_grad(opt_g, true);
            d_gen = wf_module_forward(D, fake);
            loss_g = wf_binary_cross_entropy_with_logits(d_gen, ones, NULL);
            if (!loss_g || wf_fabric_backward(fab, loss_g, G) || wf_fabric_step(fab, opt_g, NULL)) rc = -1;
        }
        if (rc >= 0) {
            step++;
            d_loss = wf_item(loss_real) + wf_item(loss_fake);
            g_loss = wf_item(loss_g);
            if (step % log_every == 0 || step == steps || step == 1)
                wf_fabric_print(fab, "step %5lld  d_loss %.4f  g_loss %.4f  D(x) %.3f  D(G(z)) %.3f  (%.1f s)\n",
                                (long long)step, d_loss, g_loss, mean_prob(d_real), mean_prob(d_fake), now() - t0);
        }
        wf_scope_end();
    }
    if (rc < 0) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    double train_s = now() - t0;
    printf("{\"d_loss\":%.6f,\"g_loss\":%.6f,\"steps\":%lld,\"train_s\":%.2f}\n", d_loss, g_loss, (long long)step, train_s);
    wf_optimizer_free(opt_g);
    wf_optimizer_free(opt_d);
    wf_module_free(G);
    wf_module_free(D);
    wf_fabric_loader_free(dl);
    wf_fabric_free(fab);
    return 0;
}
