/* The loader's per-image work that Python and PIL do slowly: region JPEG decode and RGB packing.
 *
 * decode_region: decode only a region of a JPEG, at a DCT scale, to RGBX.
 *
 * Why: a training crop (RandomResizedCrop) keeps about half of an image on average, yet a
 * whole-image decode pays for every row and column. libjpeg-turbo (>= 1.5) can skip the inverse
 * DCT, upsampling and colour conversion outside a column range (jpeg_crop_scanline), skip the
 * same for rows above (jpeg_skip_scanlines), and stop after the last row needed. The pixels
 * inside the region are the ones a whole-image decode gives, apart from the outermost column on
 * each side of an interior region (chroma upsampling there lacks its neighbour): callers ask for
 * a margin beyond what they read.
 *
 * decode_region(data, scale, x, y, width, height) -> (pixels, x0, y0, width, height)
 *   data: JPEG bytes (YCbCr or greyscale; the caller sends other colour spaces elsewhere)
 *   scale: 1, 2, 4 or 8: decode at 1/scale size in the DCT domain
 *   x, y, width, height: the wanted region in scaled pixels, clamped to the scaled image
 *   returns RGBX bytes of the decoded region, which starts at (x0, y0) and may be wider than
 *   asked (libjpeg aligns its left edge to an iMCU column)
 * The GIL is released while libjpeg works.
 *
 * pack_rgb(arrow_array, out, width, height, flip): a PIL RGBX image, exported through the Arrow C
 * data interface (Image.__arrow_c_array__, zero-copy), written as RGB bytes into `out` (a batch
 * slot), mirrored left-right if `flip`. One pass instead of PIL's transpose, tobytes and a numpy
 * copy: three passes over the image and two temporary buffers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#if !defined(JCS_EXTENSIONS)
#error "libjpeg-turbo's colour space extensions (JCS_EXT_RGBX) are required"
#endif

struct region_error {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    struct region_error *err = (struct region_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_warning(j_common_ptr cinfo, int level) {
    /* Corrupt-data warnings (level -1) would let a damaged file decode to grey silently; treat the
       first as fatal, as PIL does for truncated files. Trace messages (level >= 0) are ignored. */
    if (level < 0) on_error(cinfo);
}

static int clamp(long v, long lo, long hi) { return (int)(v < lo ? lo : (v > hi ? hi : v)); }

static PyObject *decode_region(PyObject *self, PyObject *args) {
    Py_buffer data;
    int scale;
    long x, y, w, h;
    if (!PyArg_ParseTuple(args, "y*illll", &data, &scale, &x, &y, &w, &h)) return NULL;
    if (scale != 1 && scale != 2 && scale != 4 && scale != 8) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "scale must be 1, 2, 4 or 8");
        return NULL;
    }

    struct jpeg_decompress_struct cinfo;
    struct region_error err;
    /* volatile: read after a longjmp back into this frame */
    PyObject *volatile out = NULL;
    JDIMENSION x0 = 0, y0 = 0, cw = 0, ch = 0;

    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_error;
    err.mgr.emit_message = on_warning;
    err.message[0] = '\0';
    jpeg_create_decompress(&cinfo);

    PyThreadState *thread = PyEval_SaveThread();
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        PyEval_RestoreThread(thread);
        PyBuffer_Release(&data);
        Py_XDECREF(out);
        PyErr_Format(PyExc_ValueError, "JPEG decode failed: %s", err.message);
        return NULL;
    }
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE) {
        strcpy(err.message, "not a YCbCr or greyscale JPEG");
        longjmp(err.jump, 1);
    }
    cinfo.out_color_space = JCS_EXT_RGBX;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)scale;
    jpeg_start_decompress(&cinfo);

    long full_w = (long)cinfo.output_width, full_h = (long)cinfo.output_height;
    x0 = (JDIMENSION)clamp(x, 0, full_w - 1);
    y0 = (JDIMENSION)clamp(y, 0, full_h - 1);
    cw = (JDIMENSION)clamp(x + w, (long)x0 + 1, full_w) - x0;
    ch = (JDIMENSION)clamp(y + h, (long)y0 + 1, full_h) - y0;
    if (x0 > 0 || cw < cinfo.output_width) jpeg_crop_scanline(&cinfo, &x0, &cw);  /* aligns x0 down */

    size_t stride = (size_t)cw * 4;
    PyEval_RestoreThread(thread);
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(stride * ch));
    thread = PyEval_SaveThread();
    if (out == NULL) {
        strcpy(err.message, "out of memory");
        longjmp(err.jump, 1);
    }
    unsigned char *pixels = (unsigned char *)PyBytes_AS_STRING(out);
    if (y0 > 0 && jpeg_skip_scanlines(&cinfo, y0) != y0) {
        strcpy(err.message, "image ends before the region");
        longjmp(err.jump, 1);
    }
    /* All rows at once: with fewer rows than an iMCU row per call, libjpeg upsamples chroma into a
       spare buffer and copies each row out once more. */
    JSAMPROW rows[64];
    while (cinfo.output_scanline < y0 + ch) {
        JDIMENSION done = cinfo.output_scanline - y0, n = y0 + ch - cinfo.output_scanline;
        if (n > 64) n = 64;
        for (JDIMENSION i = 0; i < n; i++) rows[i] = pixels + (size_t)(done + i) * stride;
        if (jpeg_read_scanlines(&cinfo, rows, n) == 0) {
            strcpy(err.message, "image data ends early");
            longjmp(err.jump, 1);
        }
    }
    jpeg_abort_decompress(&cinfo); /* the rows below the region are never decoded */
    jpeg_destroy_decompress(&cinfo);
    PyEval_RestoreThread(thread);
    PyBuffer_Release(&data);
    return Py_BuildValue("(NIIII)", out, x0, y0, cw, ch);
}

/* The Arrow C data interface's array struct (a stable ABI: arrow.apache.org/docs/format/CDataInterface). */
struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

static PyObject *pack_rgb(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer out;
    Py_ssize_t width, height;
    int flip;
    if (!PyArg_ParseTuple(args, "Ow*nnp", &capsule, &out, &width, &height, &flip)) return NULL;
    struct ArrowArray *array = PyCapsule_GetPointer(capsule, "arrow_array");
    if (array == NULL) {
        PyBuffer_Release(&out);
        return NULL;
    }
    /* PIL exports 4-band 8-bit images as a fixed-size list of 4 uint8 per pixel, pixels row-major */
    Py_ssize_t pixels = width * height;
    const struct ArrowArray *values = array->n_children == 1 ? array->children[0] : NULL;
    if (values == NULL || values->n_buffers != 2 || array->length != pixels || array->offset != 0 ||
        values->length < 4 * pixels || out.len != 3 * pixels || !PyBuffer_IsContiguous(&out, 'C') ||
        pixels < 1) {
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "pack_rgb: expected a width x height RGBX image and a 3-byte-per-pixel buffer");
        return NULL;
    }
    const unsigned char *src = (const unsigned char *)values->buffers[1] + 4 * values->offset;
    unsigned char *dst = (unsigned char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    /* 4 bytes per pixel at once (the 4th is overwritten by the next pixel); the image's very last
       pixel gets 3, so nothing is written past `out`. Separate loops keep the flip test out of
       the inner loop. */
    Py_ssize_t last = pixels - 1;
    if (flip) {
        for (Py_ssize_t y = 0; y < height; y++) {
            const unsigned char *row = src + 4 * width * y;
            unsigned char *to = dst + 3 * width * y;
            Py_ssize_t n = y == height - 1 ? width - 1 : width;
            for (Py_ssize_t x = 0; x < n; x++) memcpy(to + 3 * x, row + 4 * (width - 1 - x), 4);
        }
        memcpy(dst + 3 * last, src + 4 * (width * (height - 1)), 3);
    } else {
        for (Py_ssize_t i = 0; i < last; i++) memcpy(dst + 3 * i, src + 4 * i, 4);
        memcpy(dst + 3 * last, src + 4 * last, 3);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, scale, x, y, width, height) -> (rgbx_bytes, x0, y0, width, height)"},
    {"pack_rgb", pack_rgb, METH_VARARGS, "pack_rgb(arrow_array_capsule, out, width, height, flip) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_crop",
    "Region JPEG decode (libjpeg-turbo) and RGB packing for the loader (see the C source for why).", -1, methods,
};

PyMODINIT_FUNC PyInit__crop(void) { return PyModule_Create(&module); }
