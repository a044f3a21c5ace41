/* JPEG work that Python and PIL do slowly or not at all: the loader's region decode and RGB packing,
 * and pack's lossless restart transcode (add_restart_markers, below).
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
 * Huffman decoding cannot skip anything, though: the rows above the region are entropy-decoded to
 * get past them, and every row is entropy-decoded across its whole width, which is most of the
 * work (300 of 455 us for a 256 x 341 photo). A JPEG with restart markers is different: each
 * restart interval is coded on its own. When every MCU row holds a whole number of intervals
 * (`pack` writes its re-encoded JPEGs that way), the intervals that cover the region, plus a
 * chroma sample of context on each side, are copied into a smaller JPEG (same tables, its size
 * in the frame header, its markers renumbered), and only that is decoded: Huffman work follows
 * the crop's area, not the image's. Its pixels are the same, since every interval decodes alone
 * and the upsampling context is kept.
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
#include <stdlib.h>
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

/* ---- restart-interval sub-images ------------------------------------------------------------ */

struct layout {
    size_t dims;      /* offset of the frame header's height field (width follows) */
    size_t scan;      /* first byte of entropy-coded data */
    long width, height;
    int mcu_w, mcu_h;  /* MCU size in pixels at full size */
    unsigned restart;  /* MCUs per restart interval (0: none) */
};

static unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

/* The frame, restart interval and scan start of a baseline single-scan JPEG; 0 for anything else
   (progressive, arithmetic, several scans, no restart interval), which decodes the plain way. */
static int read_layout(const unsigned char *b, size_t n, struct layout *L) {
    memset(L, 0, sizeof *L);
    if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 0;
    size_t p = 2;
    int components = 0, hmax = 1, vmax = 1;
    while (p + 4 <= n) {
        if (b[p] != 0xFF) return 0;
        unsigned m = b[p + 1];
        if (m == 0xFF) { p++; continue; }  /* fill byte */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { p += 2; continue; }
        if (m == 0xD9) return 0;
        size_t len = be16(b + p + 2);
        if (len < 2 || p + 2 + len > n) return 0;
        const unsigned char *seg = b + p + 4;
        if (m == 0xC0 || m == 0xC1) {
            if (len < 8) return 0;
            components = seg[5];
            if (components < 1 || components > 4 || len < 8 + 3 * (size_t)components) return 0;
            L->dims = p + 5;
            L->height = be16(seg + 1);
            L->width = be16(seg + 3);
            for (int i = 0; i < components; i++) {
                int h = seg[7 + 3 * i] >> 4, v = seg[7 + 3 * i] & 15;
                if (h < 1 || v < 1) return 0;
                if (h > hmax) hmax = h;
                if (v > vmax) vmax = v;
            }
        } else if (m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return 0;  /* progressive, lossless or arithmetic-coded */
        } else if (m == 0xDD) {
            if (len != 4) return 0;
            L->restart = be16(seg);
        } else if (m == 0xDA) {
            if (components == 0 || seg[0] != components) return 0;  /* one scan with every component */
            L->scan = p + 2 + len;
            L->mcu_w = components == 1 ? 8 : 8 * hmax;  /* one component: non-interleaved, MCU = block */
            L->mcu_h = components == 1 ? 8 : 8 * vmax;
            return L->width > 0 && L->height > 0 && L->restart > 0;
        }
        p += 2 + len;
    }
    return 0;
}

static long ceil_div(long a, long b) { return (a + b - 1) / b; }

/* A JPEG of the restart intervals that cover the scaled region [x, x+w) x [y, y+h) (clamped to
   the image) plus two scaled pixels of context each way, in *out (malloc'd); its top-left corner
   is scaled pixel (*ox, *oy) of the image. 0: no restart intervals that align with MCU rows, damaged
   markers, or a region that needs the whole image; the caller decodes the original then. */
static int restart_subimage(const unsigned char *b, size_t n, int scale, long x, long y, long w, long h,
                            unsigned char **out, size_t *out_len, long *ox, long *oy) {
    struct layout L;
    if (!read_layout(b, n, &L)) return 0;
    long mcux = ceil_div(L.width, L.mcu_w), mcuy = ceil_div(L.height, L.mcu_h), R = (long)L.restart;
    if (mcux % R != 0) return 0;  /* intervals would wrap from one MCU row into the next */
    long per_row = mcux / R, total = per_row * mcuy;
    long sw = ceil_div(L.width, scale), sh = ceil_div(L.height, scale);  /* libjpeg's scaled size */
    long x0 = clamp(x, 0, sw - 1), y0 = clamp(y, 0, sh - 1);
    long x1 = clamp(x + w, x0 + 1, sw), y1 = clamp(y + h, y0 + 1, sh);
    long lo_x = (x0 - 2) * scale, hi_x = (x1 + 2) * scale, lo_y = (y0 - 2) * scale, hi_y = (y1 + 2) * scale;
    long c0 = clamp(lo_x, 0, L.width - 1) / L.mcu_w / R, c1 = (clamp(hi_x, 1, L.width) - 1) / L.mcu_w / R;
    long r0 = clamp(lo_y, 0, L.height - 1) / L.mcu_h, r1 = (clamp(hi_y, 1, L.height) - 1) / L.mcu_h;
    if (c0 == 0 && c1 == per_row - 1 && r0 == 0) return 0;  /* the plain decode stops after row r1 anyway */

    long last = r1 * per_row + c1;  /* the last interval needed, in scan order */
    size_t *start = malloc(sizeof(size_t) * 2 * (size_t)(last + 1));
    if (start == NULL) return 0;
    size_t *end = start + last + 1;
    long k = 0;
    size_t q = L.scan;
    start[0] = q;
    while (k <= last) {  /* find where each interval ends: at its RSTn marker (EOI for the last) */
        const unsigned char *f = q < n ? memchr(b + q, 0xFF, n - q) : NULL;
        if (f == NULL || (size_t)(f - b) + 1 >= n) break;
        q = (size_t)(f - b);
        unsigned m = b[q + 1];
        if (m == 0x00) { q += 2; continue; }  /* a stuffed 0xFF data byte */
        if (m == 0xFF) { q += 1; continue; }  /* fill */
        if (m >= 0xD0 && m <= 0xD7 && (long)(m - 0xD0) == k % 8 && k + 1 < total) {
            end[k++] = q;
            if (k <= last) start[k] = q + 2;
            q += 2;
            continue;
        }
        if (m == 0xD9 && k + 1 == total) end[k++] = q;
        break;  /* EOI, or a marker out of place: damaged, decode the original and let libjpeg say so */
    }
    if (k <= last) {
        free(start);
        return 0;
    }
    size_t size = L.scan + 2;
    for (long r = r0; r <= r1; r++)
        for (long c = c0; c <= c1; c++) size += end[r * per_row + c] - start[r * per_row + c] + 2;
    unsigned char *sub = malloc(size);
    if (sub == NULL) {
        free(start);
        return 0;
    }
    memcpy(sub, b, L.scan);
    long width = (c1 + 1) * R * L.mcu_w, height = (r1 + 1) * L.mcu_h;
    width = (width < L.width ? width : L.width) - c0 * R * L.mcu_w;
    height = (height < L.height ? height : L.height) - r0 * L.mcu_h;
    sub[L.dims] = (unsigned char)(height >> 8);
    sub[L.dims + 1] = (unsigned char)height;
    sub[L.dims + 2] = (unsigned char)(width >> 8);
    sub[L.dims + 3] = (unsigned char)width;
    size_t pos = L.scan;
    long j = 0;
    for (long r = r0; r <= r1; r++)
        for (long c = c0; c <= c1; c++, j++) {
            long i = r * per_row + c;
            memcpy(sub + pos, b + start[i], end[i] - start[i]);
            pos += end[i] - start[i];
            sub[pos++] = 0xFF;
            sub[pos++] = (r == r1 && c == c1) ? 0xD9 : (unsigned char)(0xD0 + j % 8);
        }
    free(start);
    *out = sub;
    *out_len = pos;
    *ox = c0 * R * L.mcu_w / scale;  /* a multiple of 8 pixels at full size: exact at every scale */
    *oy = r0 * L.mcu_h / scale;
    return 1;
}

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
    unsigned char *sub = NULL;
    size_t sub_len = 0;
    long ox = 0, oy = 0;  /* where the decoded (sub-)image starts in the scaled image */
    if (restart_subimage((const unsigned char *)data.buf, (size_t)data.len, scale, x, y, w, h, &sub, &sub_len,
                         &ox, &oy)) {
        x -= ox;
        y -= oy;
    }
    unsigned char *volatile owned = sub;  /* freed on either exit */
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(owned);
        PyEval_RestoreThread(thread);
        PyBuffer_Release(&data);
        Py_XDECREF(out);
        PyErr_Format(PyExc_ValueError, "JPEG decode failed: %s", err.message);
        return NULL;
    }
    if (sub != NULL)
        jpeg_mem_src(&cinfo, sub, (unsigned long)sub_len);
    else
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
    free(owned);
    PyEval_RestoreThread(thread);
    PyBuffer_Release(&data);
    return Py_BuildValue("(NIIII)", out, x0 + (JDIMENSION)ox, y0 + (JDIMENSION)oy, cw, ch);
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

/* add_restart_markers(data, interval) -> bytes: the same JPEG, its DCT coefficients untouched (so the
   same pixels), entropy-coded again with a restart marker every `interval` MCUs and optimised
   Huffman tables; APPn and COM markers (EXIF, ICC, comments) are kept. For `pack`, so that
   originals it keeps get the interval decode above too. */
static PyObject *add_restart_markers(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int interval;
    if (!PyArg_ParseTuple(args, "y*I", &data, &interval)) return NULL;
    if (interval < 1 || interval > 65535) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "interval must be 1 to 65535 MCUs");
        return NULL;
    }
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    struct region_error err;
    unsigned char *buffer = NULL;  /* jpeg_mem_dest's; its address is taken, so it lives in memory */
    unsigned long encoded_size = 0;
    src.err = jpeg_std_error(&err.mgr);
    dst.err = &err.mgr;
    err.mgr.error_exit = on_error;
    err.mgr.emit_message = on_warning;
    err.message[0] = '\0';
    jpeg_create_decompress(&src);
    jpeg_create_compress(&dst);

    PyThreadState *thread = PyEval_SaveThread();
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&dst);
        jpeg_destroy_decompress(&src);
        free(buffer);
        PyEval_RestoreThread(thread);
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "JPEG transcode failed: %s", err.message);
        return NULL;
    }
    jpeg_mem_src(&src, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
    for (int m = 0; m < 16; m++) jpeg_save_markers(&src, JPEG_APP0 + m, 0xFFFF);
    jpeg_read_header(&src, TRUE);
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    jpeg_copy_critical_parameters(&src, &dst);
    dst.restart_interval = interval;
    dst.optimize_coding = TRUE;
    jpeg_mem_dest(&dst, &buffer, &encoded_size);
    jpeg_write_coefficients(&dst, coefficients);
    for (jpeg_saved_marker_ptr m = src.marker_list; m != NULL; m = m->next) {
        /* the library writes JFIF and Adobe headers itself where the source had them */
        if (dst.write_JFIF_header && m->marker == JPEG_APP0 && m->data_length >= 5 &&
            memcmp(m->data, "JFIF", 5) == 0)
            continue;
        if (dst.write_Adobe_marker && m->marker == JPEG_APP0 + 14 && m->data_length >= 5 &&
            memcmp(m->data, "Adobe", 5) == 0)
            continue;
        jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
    }
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&src);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    PyEval_RestoreThread(thread);
    PyBuffer_Release(&data);
    PyObject *out = PyBytes_FromStringAndSize((const char *)buffer, (Py_ssize_t)encoded_size);
    free(buffer);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, scale, x, y, width, height) -> (rgbx_bytes, x0, y0, width, height)"},
    {"pack_rgb", pack_rgb, METH_VARARGS, "pack_rgb(arrow_array_capsule, out, width, height, flip) -> None"},
    {"add_restart_markers", add_restart_markers, METH_VARARGS,
     "add_restart_markers(jpeg_bytes, interval) -> jpeg_bytes (same coefficients, restart-coded)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg",
    "libjpeg-turbo for the loader (region decode, RGB packing) and pack (restart transcode); see the C source for why.", -1, methods,
};

PyMODINIT_FUNC PyInit__jpeg(void) {
    PyObject *m = PyModule_Create(&module);
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
    long version = LIBJPEG_TURBO_VERSION_NUMBER;  /* e.g. 2001005 for 2.1.5 */
#else
    long version = 0;
#endif
    if (m != NULL && PyModule_AddIntConstant(m, "libjpeg_turbo_version", version) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
