// dirsync's page: the sync switch enables the connection fields, and the
// LDAP filter is checked as it is typed. The page works without it.
(function () {
  'use strict';

  var sw = document.getElementById('sync');
  var fields = document.getElementById('ldap-fields');
  if (sw && fields && !fields.hasAttribute('data-readonly')) {
    var follow = function () { fields.disabled = !sw.checked; };
    sw.addEventListener('change', follow);
    follow();
  }

  var input = document.querySelector('input[data-check]');
  if (!input) {
    return;
  }
  var err = document.getElementById(input.id + '-error');
  var ok = document.getElementById(input.id + '-ok');
  var timer = null;
  var seq = 0;
  var markOut = document.getElementById(input.id + '-mark');
  // markAt shows the filter with the character at pos (a byte offset)
  // marked, built from text nodes only.
  var markAt = function (value, pos) {
    if (!markOut) {
      return;
    }
    markOut.textContent = '';
    if (pos < 0) {
      return;
    }
    var bytes = new TextEncoder().encode(value);
    var dec = new TextDecoder();
    var before = dec.decode(bytes.slice(0, pos));
    var rest = dec.decode(bytes.slice(pos));
    var at = rest.length ? String.fromCodePoint(rest.codePointAt(0)) : ' ';
    var code = document.createElement('code');
    var m = document.createElement('mark');
    m.textContent = at;
    code.appendChild(document.createTextNode(before));
    code.appendChild(m);
    code.appendChild(document.createTextNode(rest.slice(at.length)));
    markOut.appendChild(code);
  };
  var show = function (bad, good) {
    err.textContent = bad;
    if (!bad) {
      markAt('', -1);
    }
    if (ok) {
      ok.textContent = good;
    }
    if (bad) {
      input.setAttribute('aria-invalid', 'true');
    } else {
      input.removeAttribute('aria-invalid');
    }
  };
  var check = function () {
    var n = ++seq;
    fetch(input.getAttribute('data-check'), {
      method: 'POST',
      credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({filter: input.value.trim()})
    }).then(function (r) {
      return r.json();
    }).then(function (j) {
      if (n !== seq) {
        return;
      }
      if (typeof j.position === 'number') {
        show('Invalid filter at position ' + j.position + ': ' + j.reason, '');
        markAt(input.value.trim(), j.position);
        if (document.activeElement === input) {
          var lead = input.value.length - input.value.trimStart().length;
          var chars = new TextDecoder().decode(new TextEncoder().encode(input.value.trim()).slice(0, j.position)).length;
          var at = Math.min(lead + chars, input.value.length);
          input.setSelectionRange(at, at);
        }
      } else if (j.error) {
        show(j.error, '');
      } else {
        show('', input.value.trim() === '' ? 'The policy\'s default filter.' : 'Valid filter.');
      }
    }).catch(function () {});
  };
  input.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
})();
